"""REST throughput and latency of ipt-fhir beside a bare FastAPI endpoint, in the same run.

    python -m benchmarks.rest_bench [--duration 9] [--rounds 3] [--concurrency 1 8 32]

Starts both servers (one uvicorn worker each, same uvicorn options, SQLite for ipt-fhir), drives them
with wrk over loopback, and prints req/s, p50 and p99 for read-by-id and create of a ~3 KB CarePlan,
with ipt-fhir's throughput as a ratio of the bare endpoint's.

The two are measured in alternating slices (`--rounds` of each per row, bare first): on a shared machine
the bare endpoint's own rate was seen to drift by a third between runs minutes apart, and one long run
of each would put that drift into the ratio. A row's req/s is the mean of its slices, its p50 the median
of theirs and its p99 the highest.

The latencies are wrk's, which corrects them for coordinated omission: a response slower than twice
the mean interval between a connection's requests also adds the samples a client sending at a steady
rate would have seen waiting meanwhile. One 90 ms stall (a checkpoint's disk syncs, say) thus weighs
like the ~90 requests it held up at concurrency 1, and a p99 reads higher than the slowest 1% of the
requests actually sent.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.payloads import careplan_bytes

ROOT = Path(__file__).resolve().parents[1]
UVICORN_OPTS = ["--workers", "1", "--log-level", "warning", "--no-access-log"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wrk(url: str, script: Path, concurrency: int, duration: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t", str(min(concurrency, 2)), "-c", str(concurrency), "-d", f"{duration}s", "--latency",
         "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {m.group(1): _ms(m.group(2), m.group(3)) for m in re.finditer(r"\s(50|99)%\s+([\d.]+)(us|ms|s)\b", out)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": lat.get("50"), "p99": lat.get("99"), "errors": int(errors.group(1)) if errors else 0}


def interleaved(bare: str, server: str, script: Path, concurrency: int, duration: int, rounds: int) -> tuple:
    """(ours, bare): `rounds` slices of each, alternating, combined (module docstring)."""
    slice_seconds = max(1, round(duration / rounds))
    slices: dict[str, list[dict]] = {bare: [], server: []}
    for _ in range(rounds):
        for url in (bare, server):
            slices[url].append(wrk(url, script, concurrency, slice_seconds))
    return combined(slices[server]), combined(slices[bare])


def combined(slices: list[dict]) -> dict:
    p50s = sorted(s["p50"] for s in slices)
    return {"rps": sum(s["rps"] for s in slices) / len(slices), "p50": p50s[len(p50s) // 2],
            "p99": max(s["p99"] for s in slices), "errors": sum(s["errors"] for s in slices)}


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def lua_read(paths: list[str]) -> str:
    items = ",".join(f'"{p}"' for p in paths)
    return (f"local paths = {{{items}}}\nrequest = function()\n"
            "  return wrk.format('GET', paths[math.random(#paths)])\nend\n")


def lua_create(body: bytes) -> str:
    return ("wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/fhir+json'\n"
            f"wrk.body = [==[{body.decode()}]==]\nwrk.path = '/fhir/CarePlan'\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=9, help="seconds per row for each server")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices the duration is split into")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required (Debian package 'wrk': apt-get install wrk)")

    work = Path(tempfile.mkdtemp(prefix="ipt-fhir-bench-"))
    env = {**os.environ, "IPT_FHIR_DATABASE_URL": f"sqlite:///{work / 'bench.db'}", "PYTHONPATH": str(ROOT)}
    uvicorn = [sys.executable, "-m", "uvicorn"]
    bare_port, server_port = free_port(), free_port()
    subprocess.run([sys.executable, "-m", "ipt_fhir.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    procs = [
        start(uvicorn + ["benchmarks.bare_app:app", "--port", str(bare_port)] + UVICORN_OPTS, env),
        # as `ipt-fhir serve` runs it (observability.SERVER_OPTIONS): the app writes its own Date header
        # and reads proxy headers itself, on uvicorn's httptools protocol with its own answer to requests
        # that do not parse (http_protocol.py)
        start(uvicorn + ["ipt_fhir.app:create_app", "--factory", "--port", str(server_port), "--no-date-header",
                         "--no-proxy-headers", "--http", "ipt_fhir.http_protocol:FhirHttpToolsProtocol"]
              + UVICORN_OPTS, env),
    ]
    try:
        bare, server = f"http://127.0.0.1:{bare_port}", f"http://127.0.0.1:{server_port}"
        wait_up(bare + "/fhir/CarePlan/x")
        wait_up(server + "/fhir/metadata")
        with httpx.Client(base_url=server, headers={"Content-Type": "application/fhir+json"}) as http:
            ids = [http.post("/fhir/CarePlan", content=careplan_bytes(f"p{i}")).json()["id"] for i in range(200)]
        read_script, create_script = work / "read.lua", work / "create.lua"
        read_script.write_text(lua_read([f"/fhir/CarePlan/{i}" for i in ids]))
        create_script.write_text(lua_create(careplan_bytes("bench")))

        rows = []
        for name, script in (("read by id", read_script), ("create CarePlan", create_script)):
            for c in args.concurrency:
                rows.append((name, c, *interleaved(bare, server, script, c, args.duration, args.rounds)))
        print_table(rows, work)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def print_table(rows: list, work: Path) -> None:
    print(f"\nipt-fhir vs bare FastAPI (1 uvicorn worker each, SQLite, wrk over loopback, {os.cpu_count()} cores)")
    head = f"{'interaction':<16} {'conc':>4} {'ipt-fhir req/s':>15} {'p50 ms':>7} {'p99 ms':>7} " \
           f"{'bare req/s':>11} {'bare p99':>9} {'ratio':>6} {'errors':>6}"
    print(head)
    print("-" * len(head))  # p50/p99: wrk's, corrected for coordinated omission (module docstring)
    for name, c, ours, ceiling in rows:
        print(f"{name:<16} {c:>4} {ours['rps']:>15.0f} {ours['p50']:>7.2f} {ours['p99']:>7.2f} "
              f"{ceiling['rps']:>11.0f} {ceiling['p99']:>9.2f} {ours['rps'] / ceiling['rps']:>6.2f} {ours['errors']:>6}")
    print(json.dumps({"rows": [{"interaction": n, "concurrency": c, "ipt_fhir": o, "bare": b}
                               for n, c, o, b in rows]}), file=sys.stderr)


if __name__ == "__main__":
    main()
