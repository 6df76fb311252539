"""CPU cost of the write path's pure-Python steps, beside ceilings measured in the same run.

    python -m benchmarks.write_cpu_bench [--sample N] [--rounds R]

Every create/update/transaction entry/$import line runs parse_json (body -> dict), validate_for_write
(base R4 rules + claimed profiles) and index_rows (search index rows). This times each step for the
~3 KB IPT CarePlan of benchmarks/payloads.py and for an even sample of Synthea resources (bundle
entries and bulk NDJSON lines), after the app has been created on a scratch SQLite database (so the IPT
profiles and terminology are registered, as in the server). Ceilings, same bytes, same run:
`orjson.loads` (what parse_json would cost without exact decimals and duplicate-key checks) and a
plain recursive walk of the parsed dict (the least any validator or extractor touching every value
pays). Each figure is the best of R rounds of a timed loop, so a busy machine inflates it less.
"""
from __future__ import annotations

import argparse
import gc
import glob
import gzip
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from benchmarks.payloads import careplan_bytes  # noqa: E402

SYNTHEA = ROOT / ".." / "shared" / "fixtures" / "synthea"


def make_app(tmp: str) -> None:
    """create_app() on a migrated scratch SQLite file: registers the IPT profiles with the validator."""
    url = f"sqlite:///{tmp}/bench.db"
    env = {**os.environ, "IPT_FHIR_DATABASE_URL": url}
    subprocess.run([sys.executable, "-m", "ipt_fhir.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    os.environ["IPT_FHIR_DATABASE_URL"] = url
    from ipt_fhir.app import create_app

    create_app()


def synthea_sample(n: int) -> list[bytes]:
    """Every k-th Synthea resource (bundle entries, then bulk NDJSON lines) as the bytes a transaction or
    $import validates: with their conditional references resolved (`resolved`)."""
    from ipt_fhir.fhir.jsonio import dump_json, parse_json

    raw: list[bytes] = []
    for f in sorted(glob.glob(str(SYNTHEA / "bundles" / "*.json.gz"))):
        raw.extend(dump_json(resolved(e["resource"])) for e in parse_json(gzip.open(f).read())["entry"])
    for f in sorted(glob.glob(str(SYNTHEA / "bulk-ndjson-10-patients" / "*.ndjson.gz"))):
        if not Path(f).name.startswith("log"):
            raw.extend(dump_json(resolved(parse_json(line))) for line in gzip.open(f).read().splitlines() if line.strip())
    step = max(1, len(raw) // n)
    return raw[::step][:n]


def resolved(resource: dict) -> dict:
    """A resource as a transaction or $import writes it: its conditional references
    (`Practitioner?identifier=...`, which only those resolve) pointing at a resource by id, rewritten by
    the same link walk the transaction uses."""
    from ipt_fhir.services.placeholders import NO_LINK_TARGETS, rewrite_links

    return rewrite_links(resource, lambda ref: f"{ref.split('?', 1)[0]}/resolved" if "?" in ref else None,
                         NO_LINK_TARGETS)


def walk(value: Any) -> int:
    """The ceiling for anything that visits every value: count them."""
    if type(value) is dict:
        return 1 + sum(walk(v) for v in value.values())
    if type(value) is list:
        return 1 + sum(walk(v) for v in value)
    return 1


def best_us(fn: Callable[[], Any], rounds: int, min_time: float = 0.05) -> float:
    """Best per-call time over `rounds` rounds of a loop long enough to time reliably."""
    fn()
    loops, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time:
            break
        loops *= 2
    best = t / loops
    gc.disable()
    try:
        for _ in range(rounds - 1):
            t0 = time.perf_counter()
            for _ in range(loops):
                fn()
            best = min(best, (time.perf_counter() - t0) / loops)
    finally:
        gc.enable()
    return best * 1e6


def steps(bodies: list[bytes]) -> dict[str, Callable[[], Any]]:
    """One callable per step; each runs the step on every body (results of earlier steps precomputed)."""
    from ipt_fhir.fhir.jsonio import parse_json
    from ipt_fhir.fhir.search.indexer import index_rows
    from ipt_fhir.fhir.validation import validate_resource
    from ipt_fhir.services.validation import validate_for_write

    docs = [parse_json(b) for b in bodies]
    typed = [(d["resourceType"], d) for d in docs]
    for rt, d in typed:  # warm-up: compiled type trees and extraction plans are excluded
        validate_for_write(d, rt)
        index_rows(rt, d)
    return {
        "parse_json": lambda: [parse_json(b) for b in bodies],
        "  ceiling: orjson.loads": lambda: [orjson.loads(b) for b in bodies],
        "validate_for_write": lambda: [validate_for_write(d, rt) for rt, d in typed],
        "  of which validate_resource": lambda: [validate_resource(d, expected_type=rt) for rt, d in typed],
        "index_rows": lambda: [index_rows(rt, d) for rt, d in typed],
        "  ceiling: recursive dict walk": lambda: [walk(d) for d in docs],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sample", type=int, default=300, help="Synthea resources timed (default 300)")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_app(tmp)
        careplan = [careplan_bytes("x")]
        synthea = synthea_sample(args.sample)
        cp = {name: best_us(fn, args.rounds) for name, fn in steps(careplan).items()}
        sy = {name: best_us(fn, args.rounds) / len(synthea) for name, fn in steps(synthea).items()}
    print(f"write path CPU, one core, best of {args.rounds} rounds; load average {os.getloadavg()[0]:.2f}")
    print(f"{'step':<34}{'IPT CarePlan (%d B)' % len(careplan[0]):>22}{'Synthea, mean of %d' % len(synthea):>24}")
    for name in cp:
        print(f"{name:<34}{cp[name]:>20.1f}us{sy[name]:>22.1f}us")


if __name__ == "__main__":
    main()
