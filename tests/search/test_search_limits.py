"""How much one search may ask for: up to 100 values per parameter and 100 criteria are answered on
both databases (SQLite nests each OR and AND one level deeper and refuses past 1000 levels, which ~450
values reached with a 500); beyond that a 400 too-costly names the limit. `_id` lists take 10,000 values,
30,000 in all (a chain's list counts once per target type), and a parameter follows at most 4 references
(chains and _has): beyond, SQLite refused the SQL (a 500)."""
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


def test_long_id_lists_are_answered(client):
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    oid = client.post("/fhir/Observation", json=observation).json()["id"]
    found = _search(client, [("_id", ",".join([*(f"i{i}" for i in range(5000)), oid]))])
    assert found.status_code == 200 and found.json()["total"] == 1


def test_long_id_lists_in_a_chain_or_has_are_answered_too(client):
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



def test_more_ids_than_a_statement_can_bind_are_too_costly(client):
    """Past SQLite's 32,766 variables a list of ids was a 500, alone or in a transaction's GET entry."""
    from ipt_fhir.fhir.search.parser import MAX_ID_VALUES

    too_many = ",".join(f"i{i}" for i in range(MAX_ID_VALUES + 1))
    most = ",".join(f"i{i}" for i in range(MAX_ID_VALUES))  # subject has 4 target types: 4 lists of these
    for params in ([("_id", too_many)], [("subject._id", most)], [("_id", most)] * 4):
        r = _search(client, params)
        assert r.status_code == 400, r.text[:300]
        assert r.json()["issue"][0]["code"] == "too-costly"
    # a system search binds the list once per resource type: 500 ids took 20 s, 2,000 were a 500
    r = client.post("/fhir/_search", content=urlencode([("_id", ",".join(f"i{i}" for i in range(2000)))]),
                    headers=FORM)
    assert r.status_code == 400 and "name _type" in r.json()["issue"][0]["diagnostics"], r.text[:300]
    some = ",".join(f"i{i}" for i in range(3000))
    r = client.post("/fhir/_search", content=urlencode([("_id", some), ("_type", "Patient,Observation")]), headers=FORM)
    assert r.status_code == 200, r.text[:300]
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "GET", "url": f"Observation?_id={too_many}"}}]}
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "too-costly", r.text[:300]


@pytest.mark.parametrize("name", ["link.link.link.link.link.name", "subject:Patient.link:Patient.link.link.link.name",
                                  "_has:Observation:subject:_has:Observation:subject:_has:Observation:subject:"
                                  "_has:Observation:subject:_has:Observation:subject:code"])
def test_a_parameter_following_more_than_four_references_is_too_costly(client, name):
    rtype = "Observation" if name.startswith("subject") else "Patient"
    r = client.get(f"/fhir/{rtype}", params={name: "a"})
    assert r.status_code == 400, r.text[:300]
    assert r.json()["issue"][0]["code"] == "too-costly" and r.json()["issue"][0]["expression"] == [name]
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": f"{rtype}?{urlencode({name: 'a'})}"}}]}
    entry = client.post("/fhir", json=batch).json()["entry"][0]
    assert entry["response"]["status"].startswith("400"), entry


def test_a_parameter_following_four_references_is_answered(client):
    assert client.get("/fhir/Patient", params={"link.link.link.link.name": "a"}).status_code == 200


def test_an_unknown_deep_parameter_is_still_ignored_under_lenient_handling(client):
    r = client.get("/fhir/Patient", params={"foo.a.b.c.d.e": "1"})
    assert r.status_code == 200 and "foo.a.b.c.d.e" in r.text  # the warning names it
