"""Scale-out on one PostgreSQL: throughput of 1 instance x 1 worker, 1 x 2 and 2 x 2, side by side with a
ceiling measured in the same run (/healthz: the same processes, no database).

    IPT_FHIR_BENCH_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:54329/postgres \
        python -m benchmarks.scale_bench [--duration 8] [--clients 16]

Each configuration gets a fresh database and runs as deployed: `ipt-fhir serve --workers N`, SMART
authorization on (RS256 tokens from a JWKS file), audit on, JSON logs at warning level. Load comes from
httpx client threads in this process, round-robin over the instances, each thread on its own connection.
On a machine with few cores the client threads, the servers and PostgreSQL share them: the ceiling
column shows what the machine allows.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import jwt
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import rsa

from ipt_fhir.store import migrate

ISSUER, AUDIENCE = "https://auth.bench.example", "https://fhir.bench.example/fhir"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def token_and_jwks(directory: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="bench", use="sig", alg="RS256")
    (directory / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "scope": "user/*.*",
                       "exp": int(time.time()) + 7200}, key, algorithm="RS256", headers={"kid": "bench"})


def start(url: str, workers: int, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IPT_FHIR_", "PROMETHEUS_"))}
    env.update(IPT_FHIR_DATABASE_URL=url, IPT_FHIR_AUTH="smart", IPT_FHIR_JWKS=str(work / "jwks.json"),
               IPT_FHIR_JWT_ISSUER=ISSUER, IPT_FHIR_JWT_AUDIENCE=AUDIENCE, IPT_FHIR_LOG_LEVEL="warning",
               IPT_FHIR_PORT=str(port), IPT_FHIR_DB_POOL_SIZE="8")
    proc = subprocess.Popen([sys.executable, "-m", "ipt_fhir.cli", "serve", "--workers", str(workers)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def drive(bases: list[str], token: str, clients: int, duration: float, request) -> tuple[float, float]:  # noqa: ANN001
    counts = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + duration

    def run(i: int) -> None:
        with httpx.Client(base_url=bases[i % len(bases)], timeout=30, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}) as c:
            while time.monotonic() < stop:
                t = time.perf_counter()
                r = request(c, i)
                latencies[i].append(time.perf_counter() - t)
                if r.status_code < 300:
                    counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = sorted(x for lat in latencies for x in lat)
    p50 = flat[len(flat) // 2] * 1000 if flat else float("nan")
    return sum(counts) / duration, p50


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    admin_url = os.environ.get("IPT_FHIR_BENCH_POSTGRES_URL") or os.environ.get("IPT_FHIR_TEST_POSTGRES_URL")
    if not admin_url:
        sys.exit("set IPT_FHIR_BENCH_POSTGRES_URL (bash scripts/postgres-for-tests.sh prints one)")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    work = Path(tempfile.mkdtemp(prefix="ipt-scale-bench-"))
    token = token_and_jwks(work)
    patient = {"resourceType": "Patient", "name": [{"family": "Bench", "given": ["Scale"]}], "gender": "female",
               "birthDate": "1980-01-01"}
    rows = []
    for instances, workers in ((1, 1), (1, 2), (2, 2)):
        name = f"ipt_scale_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = admin_url.rsplit("/", 1)[0] + "/" + name
        migrate.upgrade(url)
        servers = [start(url, workers, work) for _ in range(instances)]
        bases = [b for _, b in servers]
        try:
            with httpx.Client(base_url=bases[0], headers={"Authorization": f"Bearer {token}"}) as c:
                pid = c.post("/fhir/Patient", json=patient).json()["id"]
            ceiling = drive(bases, token, args.clients, args.duration, lambda c, i: c.get("/healthz"))
            reads = drive(bases, token, args.clients, args.duration, lambda c, i: c.get(f"/fhir/Patient/{pid}"))
            creates = drive(bases, token, args.clients, args.duration, lambda c, i: c.post("/fhir/Patient", json=patient))
            rows.append((f"{instances} x {workers}", ceiling, reads, creates))
        finally:
            for proc, _ in servers:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\n{os.cpu_count()} CPUs, {args.clients} client threads, {args.duration:.0f} s per cell; req/s (p50 ms)")
    print(f"{'instances x workers':<20} {'ceiling /healthz':>18} {'read Patient':>18} {'create Patient':>18}")
    for label, *cells in rows:
        print(f"{label:<20} " + " ".join(f"{rate:>10.0f} ({p50:>5.1f})" for rate, p50 in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
