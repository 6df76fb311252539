from __future__ import annotations

import gzip
import json
import shutil
import time

import pytest

from ipt_fhir.settings import Settings
from tests.conftest import FIXTURES

NDJSON_DIR = FIXTURES / "synthea" / "bulk-ndjson-10-patients"
NDJSON_FILES = sorted(p for p in NDJSON_DIR.glob("*.ndjson.gz") if not p.name.startswith("log"))


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    return Settings(database_url=database_url, bulk_dir=str(tmp_path / "bulk"))


@pytest.fixture
def bulk_dir(settings, tmp_path):
    from pathlib import Path

    path = Path(settings.bulk_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def ndjson_inputs(bulk_dir):
    """The 10-patient Synthea export, copied where the server may read it."""
    target = bulk_dir / "in"
    target.mkdir()
    for p in NDJSON_FILES:
        shutil.copy(p, target / p.name)
    return sorted(target.iterdir())


def read_ndjson_gz(path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines() if line.strip()]


def poll(client, location: str, timeout: float = 180) -> dict:
    path = location.split("/fhir", 1)[1]
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/fhir" + path)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 202, r.text
        assert time.monotonic() < deadline, "bulk job did not finish"
        time.sleep(0.2)


def import_parameters(paths) -> dict:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueString": "application/fhir+ndjson"},
        *[{"name": "input", "part": [{"name": "url", "valueUrl": f"file://{p}"}]} for p in paths]]}
