"""How much one search may ask for: up to 100 values per parameter and 100 criteria are answered on
both databases (SQLite nests each OR and AND one level deeper and refuses past 1000 levels, which ~450
values reached with a 500); beyond that a 400 too-costly names the limit. `_id` lists are not limited."""
from __future__ import annotations

from urllib.parse import urlencode

import pytest

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _search(client, params: list[tuple[str, str]]):  # noqa: ANN001, ANN202 - POST: too long for a URL
    return client.post("/fhir/Observation/_search", content=urlencode(params), headers=FORM)


@pytest.mark.parametrize("name, value", [
    ("code", ",".join(f"http://loinc.org|c{i}" for i in range(100))),
    ("code-value-quantity", ",".join(f"http://loinc.org|c{i}$gt{i}" for i in range(100))),
    ("subject:Patient.name", ",".join(f"n{i}" for i in range(100))),
    ("date", ",".join(f"ge2020-01-{1 + i % 28:02d}" for i in range(100))),
    ("subject", ",".join(f"Patient/p{i}" for i in range(100))),
])
def test_a_parameter_with_a_hundred_values_is_answered(client, name, value):
    assert _search(client, [(name, value)]).status_code == 200


def test_a_hundred_criteria_of_a_hundred_values_each_are_answered(client):
    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": "s", "code": "c0-0"}]}}
    oid = client.post("/fhir/Observation", json=observation).json()["id"]
    criteria = [("code", ",".join(f"s|c{j}-0" for j in range(100))) for _ in range(100)]
    found = _search(client, criteria)
    assert found.status_code == 200, found.text[:300]
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [oid]


def test_more_values_or_criteria_are_too_costly(client):
    for params in ([("code", ",".join(f"c{i}" for i in range(101)))], [("code", "x")] * 101):
        r = _search(client, params)
        assert r.status_code == 400
        assert r.json()["issue"][0]["code"] == "too-costly"
    r = client.get("/fhir/Patient", params={"_has:Observation:subject:code": ",".join(f"c{i}" for i in range(101))})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_has:Observation:subject:code"]


def test_long_id_lists_are_not_limited(client):
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    oid = client.post("/fhir/Observation", json=observation).json()["id"]
    found = _search(client, [("_id", ",".join([*(f"i{i}" for i in range(5000)), oid]))])
    assert found.status_code == 200 and found.json()["total"] == 1


def test_long_id_lists_in_a_chain_or_has_are_not_limited_either(client):
    """Inside a chain or _has the ids are a list too (a compound SELECT of 5,000 terms was a 500)."""
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"}).json()["id"]
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": f"Patient/{pid}"}}
    oid = client.post("/fhir/Observation", json=observation).json()["id"]
    ids = ",".join([*(f"i{i}" for i in range(5000)), pid])
    for name in ("subject:Patient._id", "subject._id"):
        found = _search(client, [(name, ids)])
        assert found.status_code == 200, found.text[:300]
        assert [e["resource"]["id"] for e in found.json()["entry"]] == [oid]
    has = client.post("/fhir/Patient/_search", headers=FORM,
                      content=urlencode([("_has:Observation:subject:_id", ",".join([*(f"i{i}" for i in range(5000)), oid]))]))
    assert has.status_code == 200, has.text[:300]
    assert [e["resource"]["id"] for e in has.json()["entry"]] == [pid]

