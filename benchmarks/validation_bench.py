"""Strict validation speed on Synthea resources, beside fhir.resources (R4B models) in the same run.

    python benchmarks/validation_bench.py [--limit N]

Loads every entry of ../shared/fixtures/synthea/bundles/*.json.gz and every line of
bulk-ndjson-10-patients/*.ndjson.gz, warms both validators up (so compilation is excluded), then times
each resource once per round, single-threaded, and prints median/p90 per resource type and overall.
Target: median of validate_resource < 150 us per typical Synthea resource.
"""
from __future__ import annotations

import argparse
import gc
import glob
import gzip
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipt_fhir.fhir.jsonio import parse_json  # noqa: E402
from ipt_fhir.fhir.validation import validate_resource  # noqa: E402

SYNTHEA = ROOT / ".." / "shared" / "fixtures" / "synthea"


def load(limit: int | None) -> list[dict]:
    out: list[dict] = []
    for f in sorted(glob.glob(str(SYNTHEA / "bundles" / "*.json.gz"))):
        out.extend(e["resource"] for e in parse_json(gzip.open(f).read())["entry"])
    for f in sorted(glob.glob(str(SYNTHEA / "bulk-ndjson-10-patients" / "*.ndjson.gz"))):
        if Path(f).name.startswith("log"):
            continue
        out.extend(parse_json(line) for line in gzip.open(f).read().splitlines() if line.strip())
    return out[:limit] if limit else out


def fhir_resources_validator():
    try:
        from fhir.resources.R4B import get_fhir_model_class
    except ImportError:  # pragma: no cover
        return None

    def run(resource: dict) -> None:
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception:
            pass  # R4B models reject some R4 shapes; we time the attempt all the same

    return run


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def time_each(fn, resources: list[dict], rounds: int) -> tuple[list[float], dict[str, list[float]]]:
    best = [float("inf")] * len(resources)
    gc.disable()
    try:
        for _ in range(rounds):
            for i, r in enumerate(resources):
                t = time.perf_counter()
                fn(r)
                best[i] = min(best[i], time.perf_counter() - t)
    finally:
        gc.enable()
    by_type: dict[str, list[float]] = defaultdict(list)
    for r, t in zip(resources, best):
        by_type[r["resourceType"]].append(t)
    return best, by_type


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    resources = load(args.limit)
    invalid = sum(1 for r in resources if any(i.is_error for i in validate_resource(r)))  # also warms up
    ours, ours_by_type = time_each(validate_resource, resources, args.rounds)
    fr = fhir_resources_validator()
    theirs, theirs_by_type = (time_each(fr, resources, args.rounds) if fr else ([], {}))
    us = 1e6
    print(f"{len(resources)} Synthea resources, {invalid} with errors; best of {args.rounds} rounds per resource, one core")
    print(f"{'type':<28}{'n':>6}  {'strict median':>14}{'p90':>10}  {'fhir.resources median':>22}{'p90':>10}")
    for rt in sorted(ours_by_type, key=lambda k: -len(ours_by_type[k])):
        o = ours_by_type[rt]
        t = theirs_by_type.get(rt, [])
        print(f"{rt:<28}{len(o):>6}  {statistics.median(o) * us:>12.1f}us{percentile(o, .9) * us:>8.1f}us"
              + (f"  {statistics.median(t) * us:>20.1f}us{percentile(t, .9) * us:>8.1f}us" if t else ""))
    print(f"{'ALL':<28}{len(ours):>6}  {statistics.median(ours) * us:>12.1f}us{percentile(ours, .9) * us:>8.1f}us"
          + (f"  {statistics.median(theirs) * us:>20.1f}us{percentile(theirs, .9) * us:>8.1f}us" if theirs else ""))
    target = 150
    verdict = "meets" if statistics.median(ours) * us < target else "MISSES"
    print(f"strict validate_resource median {statistics.median(ours) * us:.1f}us {verdict} the {target}us target")


if __name__ == "__main__":
    main()
