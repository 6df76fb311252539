from __future__ import annotations

import gzip
import json
import shutil
import time

import pytest

from ipt_fhir.settings import Settings
from tests.conftest import FIXTURES, TEST_PROXY

NDJSON_DIR = FIXTURES / "synthea" / "bulk-ndjson-10-patients"
NDJSON_FILES = sorted(p for p in NDJSON_DIR.glob("*.ndjson.gz") if not p.name.startswith("log"))


@pytest.fixture
def settings(database_url: str, tmp_path) -> Settings:
    return Settings(database_url=database_url, bulk_dir=str(tmp_path / "bulk"), forwarded_allow_ips=TEST_PROXY)


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
    r = final_status(client, location, timeout)
    assert r.status_code == 200, r.text
    return r.json()


def final_status(client, location: str, timeout: float = 180):  # noqa: ANN201 - the httpx response
    """The status poll's first answer that is not 202 (in progress): the job's result, or its failure."""
    path = location.split("/fhir", 1)[1]
    deadline = time.monotonic() + timeout
    while (r := client.get("/fhir" + path)).status_code == 202:
        assert time.monotonic() < deadline, "bulk job did not finish"
        time.sleep(0.2)
    return r


def import_parameters(paths) -> dict:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueString": "application/fhir+ndjson"},
        *[{"name": "input", "part": [{"name": "url", "valueUrl": f"file://{p}"}]} for p in paths]]}


ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
LENIENT = {**ASYNC, "Prefer": "respond-async, handling=lenient"}  # others' data exported, refusals noted


def export(client, path: str, parameters: dict | None = None) -> dict[str, list[dict]]:
    """Kick off an export (a GET, or a POST of `parameters`), wait for it, and read its files by type."""
    if parameters is None:
        r = client.get(path, headers=ASYNC)
    else:
        r = client.post(path, json=parameters, headers=ASYNC)
    return read_export(client, r)


def read_export(client, kick_off) -> dict[str, list[dict]]:
    """The files of the export `kick_off` started, once it has finished, by type."""
    assert kick_off.status_code == 202, kick_off.text
    manifest = poll(client, kick_off.headers["Content-Location"])
    return {o["type"]: [json.loads(x) for x in client.get(o["url"].split("testserver", 1)[1]).text.splitlines()]
            for o in manifest["output"]}


@pytest.fixture
def group_of_two(client):
    """Group g has members a and b; c is a patient outside it. Each patient has one Encounter."""
    for pid in ("a", "b", "c"):
        client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid})
        client.put(f"/fhir/Encounter/enc-{pid}", json={"resourceType": "Encounter", "id": f"enc-{pid}",
                                                       "status": "finished", "class": {"code": "AMB"},
                                                       "subject": {"reference": f"Patient/{pid}"}})
    client.put("/fhir/Group/g", json={"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                                      "member": [{"entity": {"reference": "Patient/a"}},
                                                 {"entity": {"reference": "Patient/b"}}]})
    return client


def ids_by_type(exported: dict[str, list[dict]]) -> dict[str, set[str]]:
    return {rtype: {r["id"] for r in resources} for rtype, resources in exported.items()}


def patient_parameters(*references: str) -> dict:
    """A POST kick-off's Parameters: `patient` is a valueReference (export.html)."""
    return {"resourceType": "Parameters",
            "parameter": [{"name": "patient", "valueReference": {"reference": ref}} for ref in references]}
