"""parse_json, validate_resource, validate_profiles and index_rows give exactly the recorded results.

The recording (write_path_golden.json.gz, made by write_path_golden.py before the write path was
optimised) covers every official example, every Synthea bundle, a fifth of the Synthea NDJSON lines,
IPT resources, and deterministic mutations and byte variants of them all; see write_path_golden.py.
"""
from __future__ import annotations

import gzip
import json

import pytest

from tests.fhir import write_path_golden as golden

SHARDS = 8


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, str]]:
    golden.register_ipt()
    return json.loads(gzip.decompress(golden.RECORDING.read_bytes()))


def _source(case: str) -> str:
    return case.split("#", 1)[0].split("~", 1)[0]


@pytest.mark.parametrize("shard", range(SHARDS))
def test_write_path_matches_the_recording(shard: int, recorded: dict) -> None:
    seen, differing = set(), []
    for name, kind, payload in golden.cases(shard, SHARDS):
        seen.add(name)
        if golden.outcome(kind, payload) != recorded.get(name):
            differing.append(name)
    assert differing == [], f"{len(differing)} of {len(seen)} cases differ, e.g. {differing[:10]}"
    assert seen == {n for n in recorded if golden.shard_of(_source(n), SHARDS) == shard}
