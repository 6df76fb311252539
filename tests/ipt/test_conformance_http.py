"""The IPT conformance resources: served read-only, searchable, named in the CapabilityStatement."""
from __future__ import annotations

import pytest

from ipt_fhir.domain.conformance_loader import load_conformance
from ipt_fhir.fhir.validation import validate_resource

BASE = "http://ipt-fhir.org/fhir"


@pytest.mark.parametrize("rtype,rid", [("StructureDefinition", "ipt-careplan"), ("CodeSystem", "ipt-problem-area"),
                                       ("ValueSet", "ipt-phase"), ("PlanDefinition", "ipt-who-group")])
def test_each_kind_of_conformance_resource_is_readable(client, rtype, rid):
    r = client.get(f"/fhir/{rtype}/{rid}")
    assert r.status_code == 200
    body = r.json()
    assert (body["resourceType"], body["id"], body["url"]) == (rtype, rid, f"{BASE}/{rtype}/{rid}")
    assert r.headers["ETag"] == 'W/"1"'
    assert client.get(f"/fhir/{rtype}/{rid}/_history/1").json()["id"] == rid
    assert client.get(f"/fhir/{rtype}/{rid}/_history/2").status_code == 404
    history = client.get(f"/fhir/{rtype}/{rid}/_history").json()
    assert history["total"] == 1
    # its one version as a stored resource's history shows the create that made it
    (entry,) = history["entry"]
    assert entry["resource"] == body and entry["request"] == {"method": "POST", "url": rtype}
    assert entry["response"] == {"status": "201 Created", "etag": 'W/"1"', "lastModified": body["meta"]["lastUpdated"]}


def test_every_conformance_resource_is_served(client):
    for r in load_conformance(BASE):
        assert client.get(f"/fhir/{r['resourceType']}/{r['id']}").status_code == 200, r["id"]


def test_search_by_url_name_and_status(client):
    url = f"{BASE}/StructureDefinition/ipt-session-encounter"
    by_url = client.get("/fhir/StructureDefinition", params={"url": url}).json()
    assert [e["resource"]["id"] for e in by_url["entry"]] == ["ipt-session-encounter"]
    assert by_url["total"] == 1
    by_name = client.get("/fhir/CodeSystem", params={"name": "iptprob"}).json()
    assert [e["resource"]["id"] for e in by_name["entry"]] == ["ipt-problem-area"]
    exact = client.get("/fhir/CodeSystem", params={"name:exact": "iptprob"}).json()
    assert exact.get("entry", []) == []
    active = client.get("/fhir/PlanDefinition", params={"status": "active"}).json()
    assert active["total"] == 5
    retired = client.get("/fhir/PlanDefinition", params={"status": "retired"}).json()
    assert retired["total"] == 0 and not retired.get("entry")


def test_search_merges_stored_conformance_resources(client):
    cs = {"resourceType": "CodeSystem", "url": "http://example.org/cs", "name": "IPTLocal", "status": "active",
          "content": "complete", "concept": [{"code": "a"}]}
    assert client.post("/fhir/CodeSystem", json=cs).status_code == 201
    found = client.get("/fhir/CodeSystem", params={"name": "IPT"}).json()
    names = sorted(e["resource"]["name"] for e in found["entry"])
    assert "IPTLocal" in names and "IPTPhase" in names and found["total"] == 7


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_conformance_resources_are_read_only(client, method):
    url = "/fhir/StructureDefinition/ipt-careplan"
    body = client.get(url).json()
    if method == "put":
        r = client.put(url, json=body)
    elif method == "patch":
        r = client.patch(url, json=[{"op": "replace", "path": "/status", "value": "retired"}],
                         headers={"Content-Type": "application/json-patch+json"})
    else:
        r = client.delete(url)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD"
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(url).json()["status"] == "active"


@pytest.mark.parametrize("path", ["", "/_history/1"])
def test_a_served_id_under_another_conformance_type_is_not_known(client, path):
    """ipt-careplan is a StructureDefinition this server serves: as a PlanDefinition it is nothing, served
    or stored (read and vread answer 404, not the StructureDefinition and not a 500)."""
    r = client.get(f"/fhir/PlanDefinition/ipt-careplan{path}")
    assert r.status_code == 404, r.text
    assert "PlanDefinition/ipt-careplan is not known" in r.json()["issue"][0]["diagnostics"]


def test_a_transaction_writing_a_conformance_resource_fails_at_that_entry(client):
    """The refusal names the entry (Bundle.entry[i]). Its Allow is that of the URL the Bundle was POSTed to
    (RFC 9110: a 405 lists the target's methods), not GET, HEAD of the entry's URL."""
    body = client.get("/fhir/StructureDefinition/ipt-careplan").json()
    patient = {"resourceType": "Patient", "name": [{"family": "Kept-Out"}]}
    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient, "request": {"method": "POST", "url": "Patient"}},
        {"resource": body, "request": {"method": "PUT", "url": "StructureDefinition/ipt-careplan"}}]})
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == "GET, HEAD, POST"
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource"], issue
    assert issue["diagnostics"].startswith("Bundle.entry[1]: "), issue
    assert client.get("/fhir/Patient", params={"family": "Kept-Out"}).json().get("total") == 0


def test_a_stored_resource_cannot_claim_a_published_canonical_url(client):
    sd = client.get("/fhir/ValueSet/ipt-phase").json()
    sd.pop("id")
    sd.pop("meta")
    r = client.post("/fhir/ValueSet", json=sd)
    assert r.status_code == 422
    assert "ValueSet.url" in r.json()["issue"][0]["expression"]


def test_capability_statement_names_profiles_and_operations(client):
    cs = client.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert by_type["CarePlan"]["supportedProfile"] == [f"{BASE}/StructureDefinition/ipt-careplan"]
    assert by_type["Encounter"]["supportedProfile"] == [f"{BASE}/StructureDefinition/ipt-session-encounter"]
    assert by_type["Observation"]["supportedProfile"] == [f"{BASE}/StructureDefinition/ipt-symptom-score"]
    plan_ops = {o["name"]: o["definition"] for o in by_type["PlanDefinition"]["operation"]}
    assert plan_ops["apply"] == f"{BASE}/OperationDefinition/ipt-apply"
    careplan_ops = {o["name"]: o["definition"] for o in by_type["CarePlan"]["operation"]}
    assert careplan_ops["ipt-progress"] == f"{BASE}/OperationDefinition/ipt-progress"
    # the definition it names is served
    assert client.get("/fhir/OperationDefinition/ipt-progress").json()["code"] == "ipt-progress"
    assert {o["name"] for o in by_type["Patient"]["operation"]} >= {"validate", "everything", "export"}
    assert {o["name"] for o in cs["rest"][0]["operation"]} == {"export", "import", "meta"}
    assert {i["code"] for i in by_type["AuditEvent"]["interaction"]} == {
        "read", "vread", "history-instance", "history-type", "search-type"}


def test_the_apply_definition_the_capability_statement_names_describes_what_apply_returns(client):
    """HL7's PlanDefinition-apply returns a CarePlan; this server's $apply a Bundle: it names its own
    definition, served, valid R4, whose parameters are the ones the operation takes and answers with."""
    cs = client.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    (apply,) = [o for o in by_type["PlanDefinition"]["operation"] if o["name"] == "apply"]
    served = client.get("/fhir/OperationDefinition/ipt-apply")
    assert served.status_code == 200
    definition = served.json()
    assert definition["url"] == apply["definition"]
    assert (definition["code"], definition["resource"], definition["instance"]) == ("apply", ["PlanDefinition"], True)
    outputs = [p for p in definition["parameter"] if p["use"] == "out"]
    assert [(p["name"], p["type"], p["min"], p["max"]) for p in outputs] == [("return", "Bundle", 1, "1")]
    inputs = {p["name"]: p for p in definition["parameter"] if p["use"] == "in"}
    assert set(inputs) == {"subject", "practitioner", "start", "sessionCount", "weekday", "store"}
    assert [n for n, p in inputs.items() if p["min"] == 1] == ["subject", "start"]
    # valid R4 as served ($validate would refuse it as a write of a published resource)
    assert [i for i in validate_resource(definition) if i.is_error] == []

    # what the definition declares is what the operation answers with
    result = client.get("/fhir/PlanDefinition/ipt-brief/$apply",
                        params={"subject": "Patient/p1", "start": "2025-01-06", "weekday": "mon"})
    assert result.status_code == 200, result.text
    assert result.json()["resourceType"] == "Bundle"


def test_conditional_interactions_see_the_published_resources(client):
    """Criteria that match one of the server's own resources: a conditional create answers with it (200),
    nothing is stored; a conditional update, patch or delete would change it and is refused (405), as a
    write to its id is; in Bundles alike."""
    url = f"{BASE}/CodeSystem/ipt-phase"
    body = {"resourceType": "CodeSystem", "url": url, "status": "active", "content": "complete"}
    created = client.post("/fhir/CodeSystem", json=body, headers={"If-None-Exist": f"url={url}"})
    assert created.status_code == 200, created.text
    assert created.json()["id"] == "ipt-phase" and created.headers["location"].endswith("/CodeSystem/ipt-phase/_history/1")
    assert client.get(f"/fhir/CodeSystem?url={url}").json()["total"] == 1  # nothing stored beside it
    assert client.put(f"/fhir/CodeSystem?url={url}", json=body).status_code == 405
    patch = [{"op": "replace", "path": "/status", "value": "retired"}]
    assert client.patch(f"/fhir/CodeSystem?url={url}", json=patch,
                        headers={"Content-Type": "application/json-patch+json"}).status_code == 405
    assert client.delete(f"/fhir/CodeSystem?url={url}").status_code == 405
    assert client.get("/fhir/CodeSystem/ipt-phase").json()["status"] == "active"

    r = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": body, "request": {"method": "POST", "url": "CodeSystem", "ifNoneExist": f"url={url}"}},
        {"resource": body, "request": {"method": "PUT", "url": f"CodeSystem?url={url}"}},
        {"request": {"method": "DELETE", "url": f"CodeSystem?url={url}"}}]})
    found, update, delete = r.json()["entry"]
    assert found["response"]["status"] == "200 OK" and found["resource"]["id"] == "ipt-phase"
    for refused in (update, delete):
        assert refused["response"]["status"].startswith("405"), refused
        assert refused["response"]["outcome"]["issue"][0]["expression"][0].startswith("Bundle.entry[")
    assert client.get(f"/fhir/CodeSystem?url={url}").json()["total"] == 1
