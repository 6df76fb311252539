"""$meta, $meta-add and $meta-delete (R4 resource-operations.html): Parameters in and out, versions kept."""
from __future__ import annotations

import pytest

V3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
IPT_CAREPLAN = "http://ipt-fhir.org/fhir/StructureDefinition/ipt-careplan"


def _meta(**meta) -> dict:
    return {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": meta}]}


def _returned(response) -> dict:
    assert response.status_code == 200, response.text
    [parameter] = response.json()["parameter"]
    assert parameter["name"] == "return"
    return parameter["valueMeta"]


@pytest.fixture
def patient(client) -> dict:
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "meta": {
        "tag": [{"system": "urn:clinic:tags", "code": "intake", "display": "Intake"}]}})
    assert r.status_code == 201
    return r.json()


def _ids(client, query: str) -> set[str]:
    return {e["resource"]["id"] for e in client.get(f"/fhir/Patient?{query}").json().get("entry", [])}


def test_meta_of_a_resource_is_its_meta(client, patient):
    returned = _returned(client.get(f"/fhir/Patient/{patient['id']}/$meta"))
    assert returned == patient["meta"]
    assert _returned(client.post(f"/fhir/Patient/{patient['id']}/$meta")) == patient["meta"]
    assert _returned(client.post(f"/fhir/Patient/{patient['id']}/_history/1/$meta",
                                 json={"resourceType": "Parameters"})) == patient["meta"]
    with_one = {"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]}
    refused = client.post(f"/fhir/Patient/{patient['id']}/$meta", json=with_one)
    assert refused.status_code == 400 and "takes no parameters" in refused.text
    in_batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": f"Patient/{patient['id']}/$meta"}, "resource": with_one}]})
    [entry] = in_batch.json()["entry"]
    assert entry["response"]["status"] == "400" and "takes no parameters" in entry["response"]["outcome"]["issue"][0]["diagnostics"]


def test_meta_add_keeps_the_version_and_reaches_search(client, patient):
    pid, before = patient["id"], patient["meta"]
    returned = _returned(client.post(f"/fhir/Patient/{pid}/$meta-add", json=_meta(
        tag=[{"system": "urn:clinic:tags", "code": "intake", "display": "Other words"},  # same system|code
             {"system": "urn:clinic:tags", "code": "follow-up"}],
        security=[{"system": V3, "code": "TABOO"}],
        profile=["http://example.org/StructureDefinition/clinic-patient"])))
    assert returned["tag"] == before["tag"] + [{"system": "urn:clinic:tags", "code": "follow-up"}]
    assert returned["security"] == [{"system": V3, "code": "TABOO"}]
    assert returned["profile"] == ["http://example.org/StructureDefinition/clinic-patient"]
    assert (returned["versionId"], returned["lastUpdated"]) == (before["versionId"], before["lastUpdated"])
    read = client.get(f"/fhir/Patient/{pid}")
    assert read.json()["meta"] == returned and read.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{pid}/_history").json()["total"] == 1
    assert _ids(client, "_tag=urn:clinic:tags|follow-up") == {pid}
    assert _ids(client, f"_security={V3}|TABOO") == {pid}
    assert _ids(client, "_profile=http://example.org/StructureDefinition/clinic-patient") == {pid}


def test_meta_delete_removes_by_system_and_code_and_from_search(client, patient):
    pid = patient["id"]
    returned = _returned(client.post(f"/fhir/Patient/{pid}/$meta-delete", json=_meta(
        tag=[{"system": "urn:clinic:tags", "code": "intake", "display": "not compared"}])))
    assert "tag" not in returned and returned["versionId"] == "1"
    assert "tag" not in client.get(f"/fhir/Patient/{pid}").json()["meta"]
    assert _ids(client, "_tag=urn:clinic:tags|intake") == set()
    # removing what is not there changes nothing
    assert _returned(client.post(f"/fhir/Patient/{pid}/$meta-delete", json=_meta(profile=["http://x.org/p"]))) == returned


def test_meta_add_on_a_historical_version_changes_that_version_only(client, patient):
    pid = patient["id"]
    update = client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "active": True})
    assert update.status_code == 200
    returned = _returned(client.post(f"/fhir/Patient/{pid}/_history/1/$meta-add",
                                     json=_meta(tag=[{"system": "urn:clinic:tags", "code": "archived"}])))
    assert {"system": "urn:clinic:tags", "code": "archived"} in returned["tag"] and returned["versionId"] == "1"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["meta"] == returned
    current = client.get(f"/fhir/Patient/{pid}").json()
    assert current["meta"]["versionId"] == "2" and "tag" not in current["meta"]
    assert _ids(client, "_tag=urn:clinic:tags|archived") == set()  # the index is the current version's
    assert client.get(f"/fhir/Patient/{pid}/_history").json()["total"] == 2


def test_meta_of_a_type_and_of_the_server_is_what_is_in_use(client, patient):
    other = client.post("/fhir/Observation", json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "meta": {"security": [{"system": V3, "code": "TABOO"}]}}).json()
    gone = client.post("/fhir/Patient", json={"resourceType": "Patient", "meta": {
        "tag": [{"system": "urn:clinic:tags", "code": "gone"}]}}).json()
    assert client.delete(f"/fhir/Patient/{gone['id']}").status_code in (200, 204)
    patients = _returned(client.get("/fhir/Patient/$meta"))
    assert patients == {"tag": [{"system": "urn:clinic:tags", "code": "intake"}]}  # no deleted resource's tag
    everything = _returned(client.get("/fhir/$meta"))
    assert everything["tag"] == [{"system": "urn:clinic:tags", "code": "intake"}]
    assert everything["security"] == [{"system": V3, "code": "TABOO"}]
    assert _returned(client.get("/fhir/Observation/$meta")) == {"security": other["meta"]["security"]}


def test_meta_of_a_type_with_nothing_in_use_is_still_valid_fhir(client):
    """FHIR JSON has no empty objects and `return` is 1..1: an empty Meta says why it is empty."""
    from ipt_fhir.fhir.validation import validate_resource

    answer = client.get("/fhir/Goal/$meta").json()
    assert [i for i in validate_resource(answer, expected_type="Parameters") if i.is_error] == []
    meta = answer["parameter"][0]["valueMeta"]
    assert set(meta) == {"extension"} and meta["extension"][0]["valueCode"] == "not-applicable"


def test_meta_answers_as_read_for_unknown_and_deleted_resources(client, patient):
    assert client.get("/fhir/Patient/no-such-one/$meta").status_code == 404
    assert client.get(f"/fhir/Patient/{patient['id']}/_history/7/$meta").status_code == 404
    assert client.delete(f"/fhir/Patient/{patient['id']}").status_code in (200, 204)
    assert client.get(f"/fhir/Patient/{patient['id']}/$meta").status_code == 410
    add = client.post(f"/fhir/Patient/{patient['id']}/$meta-add", json=_meta(tag=[{"code": "x"}]))
    assert add.status_code == 410
    assert client.post("/fhir/Patient/no-such-one/$meta-add", json=_meta(tag=[{"code": "x"}])).status_code == 404


@pytest.mark.parametrize("body, expression", [
    ({"resourceType": "Patient"}, "Parameters"),
    (_meta(tag=[{"system": 1}]), "Parameters.parameter[0].value.ofType(Meta).tag[0].system"),
    ({"resourceType": "Parameters", "parameter": [{"name": "tags", "valueMeta": {"tag": [{"code": "x"}]}}]},
     "Parameters.parameter[0].name"),
    ({"resourceType": "Parameters", "parameter": [{"name": "meta", "valueString": "x"}]}, "Parameters.parameter[0]"),
    ({"resourceType": "Parameters"}, "Parameters.parameter"),
])
def test_bad_input_is_a_400_naming_the_element(client, patient, body, expression):
    r = client.post(f"/fhir/Patient/{patient['id']}/$meta-add", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == [expression]
    assert client.get(f"/fhir/Patient/{patient['id']}").json()["meta"] == patient["meta"]


def test_changing_meta_needs_post(client, patient):
    for op in ("$meta-add", "$meta-delete"):
        r = client.get(f"/fhir/Patient/{patient['id']}/{op}")
        assert r.status_code == 405 and r.headers["allow"] == "POST"
        assert r.json()["resourceType"] == "OperationOutcome"


def test_a_claimed_profile_must_hold(client):
    plan = client.post("/fhir/CarePlan", json={"resourceType": "CarePlan", "status": "active", "intent": "plan",
                                               "subject": {"reference": "Patient/p"}}).json()
    r = client.post(f"/fhir/CarePlan/{plan['id']}/$meta-add", json=_meta(profile=[IPT_CAREPLAN]))
    assert r.status_code in (400, 422) and r.json()["resourceType"] == "OperationOutcome"
    assert "profile" not in client.get(f"/fhir/CarePlan/{plan['id']}").json()["meta"]


def test_the_servers_own_conformance_resources_are_read_only(client):
    meta = _returned(client.get("/fhir/StructureDefinition/ipt-careplan/$meta"))
    assert meta["versionId"] == "1"
    r = client.post("/fhir/StructureDefinition/ipt-careplan/$meta-add", json=_meta(tag=[{"code": "x"}]))
    assert r.status_code == 405


def test_meta_entries_in_a_batch(client, patient):
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{patient['id']}/$meta"}},
        {"request": {"method": "GET", "url": "Patient/$meta"}},
        {"request": {"method": "GET", "url": "$meta"}}]})
    assert r.status_code == 200
    answers = [e["resource"]["parameter"][0]["valueMeta"] for e in r.json()["entry"]]
    assert answers[0] == patient["meta"]
    assert answers[1] == answers[2] == {"tag": [{"system": "urn:clinic:tags", "code": "intake"}]}


def test_meta_changes_in_bundles(client, patient):
    """In a batch an entry changes meta on its own; in a transaction, in its unit of work, after the
    transaction's writes (operations run with the reads), so a failing entry undoes it too."""
    pid = patient["id"]
    label = {"system": "urn:clinic:tags", "code": "batched"}
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": f"Patient/{pid}/$meta-add"}, "resource": _meta(tag=[label])},
        {"request": {"method": "GET", "url": f"Patient/{pid}/_history/1/$meta"}},
        {"request": {"method": "GET", "url": f"Patient/{pid}/$meta-add"}}]})
    added, version, refused = r.json()["entry"]
    assert label in added["resource"]["parameter"][0]["valueMeta"]["tag"]
    assert version["resource"]["parameter"][0]["valueMeta"] == client.get(f"/fhir/Patient/{pid}").json()["meta"]
    assert refused["response"]["status"].startswith("405")
    failing = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": f"Patient/{pid}/$meta-delete"}, "resource": _meta(tag=[label])},
        {"request": {"method": "PUT", "url": "Patient/x"}, "resource": {"resourceType": "Patient", "id": "y"}}]})
    assert failing.status_code == 400
    assert label in client.get(f"/fhir/Patient/{pid}").json()["meta"]["tag"]
    done = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": f"Patient/{pid}/$meta-delete"}, "resource": _meta(tag=[label])}]})
    assert done.status_code == 200, done.text
    assert label not in client.get(f"/fhir/Patient/{pid}").json()["meta"]["tag"]
    assert client.get(f"/fhir/Patient/{pid}").headers["etag"] == 'W/"1"'


def test_the_capability_statement_names_the_operations(client):
    rest = client.get("/fhir/metadata").json()["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    audit = next(r for r in rest["resource"] if r["type"] == "AuditEvent")
    assert {"meta", "meta-add", "meta-delete"} <= {o["name"] for o in patient["operation"]}
    assert "meta" in {o["name"] for o in audit["operation"]}
    assert "meta-add" not in {o["name"] for o in audit["operation"]}
    assert "meta" in {o["name"] for o in rest["operation"]}


def test_the_ipt_read_model_follows_a_meta_change(client):
    """The IPT hooks run on $meta-add and $meta-delete of the current version: a plan that no longer
    claims the IPT CarePlan profile has no progress, and claiming it again brings the progress back."""
    from tests.ipt.helpers import load_world, progress

    load_world(client)
    assert progress(client, "plan")["sessionsPlanned"] > 0
    profile = client.get("/fhir/CarePlan/plan").json()["meta"]["profile"]
    assert IPT_CAREPLAN in profile
    assert client.post("/fhir/CarePlan/plan/$meta-delete", json=_meta(profile=[IPT_CAREPLAN])).status_code == 200
    assert client.get("/fhir/CarePlan/plan/$ipt-progress").status_code == 422
    assert client.post("/fhir/CarePlan/plan/$meta-add", json=_meta(profile=[IPT_CAREPLAN])).status_code == 200
    assert progress(client, "plan")["sessionsPlanned"] > 0


def test_extensions_on_profiles_stay_with_their_profile(client):
    """Lossless: a `meta._profile` extension belongs to the profile at its index (json.html#primitive);
    adding and removing profiles keeps each where its profile is."""
    ext = {"extension": [{"url": "http://example.org/why", "valueString": "b's reason"}]}
    a, b, c = (f"http://example.org/StructureDefinition/{n}" for n in "abc")
    created = client.post("/fhir/Basic", json={"resourceType": "Basic", "code": {"text": "x"},
                                                "meta": {"profile": [a, b], "_profile": [None, ext]}})
    assert created.status_code == 201, created.text
    url = f"/fhir/Basic/{created.json()['id']}"
    returned = _returned(client.post(f"{url}/$meta-add", json=_meta(profile=[c])))
    assert returned["profile"] == [a, b, c] and returned["_profile"] == [None, ext, None]
    returned = _returned(client.post(f"{url}/$meta-delete", json=_meta(profile=[a])))
    assert returned["profile"] == [b, c] and returned["_profile"] == [ext, None]
    returned = _returned(client.post(f"{url}/$meta-delete", json=_meta(profile=[b])))
    assert returned["profile"] == [c] and "_profile" not in returned  # no extension left to keep
    assert client.get(url).json()["meta"]["profile"] == [c]
