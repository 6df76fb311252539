"""Sensitive labels need the extra scope; AuditEvents are BALP-shaped, searchable, and read-only."""
from __future__ import annotations

from .conftest import ADMIN, SENSITIVE, audit_events, create, observation, patient

PSYTHPN = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSYTHPN"}
RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


def test_labelled_resources_need_the_sensitive_scope(secure_client, keys):
    c = secure_client
    p = patient(c, keys, "Label")
    note = observation(c, keys, p["id"], meta={"security": [PSYTHPN]})
    restricted = observation(c, keys, p["id"], meta={"security": [RESTRICTED]})
    plain = observation(c, keys, p["id"])
    without = keys.headers("user/*.rs")
    with_scope = keys.headers(f"user/*.rs {SENSITIVE}")
    for o in (note, restricted):
        assert c.get(f"/fhir/Observation/{o['id']}", headers=without).status_code == 403
        assert c.get(f"/fhir/Observation/{o['id']}/_history/1", headers=without).status_code == 403
        assert c.get(f"/fhir/Observation/{o['id']}", headers=with_scope).status_code == 200
    bundle = c.get(f"/fhir/Observation?subject=Patient/{p['id']}", headers=without).json()
    assert {e["resource"]["id"] for e in bundle["entry"]} == {plain["id"]}
    assert bundle["total"] == 1
    bundle = c.get(f"/fhir/Observation?subject=Patient/{p['id']}", headers=with_scope).json()
    assert bundle["total"] == 3
    ids = {e["resource"]["id"] for e in c.get(f"/fhir/Patient?_id={p['id']}&_revinclude=Observation:subject",
                                               headers=without).json()["entry"]}
    assert note["id"] not in ids and plain["id"] in ids
    ids = {e["resource"].get("id") for e in c.get("/fhir/Observation/_history", headers=without).json()["entry"]}
    assert note["id"] not in ids and restricted["id"] not in ids


def test_audit_event_has_who_what_when_outcome_and_patient(secure_client, keys, database):
    c = secure_client
    p = patient(c, keys, "Audited")
    o = observation(c, keys, p["id"])
    c.get(f"/fhir/Observation/{o['id']}", headers=keys.headers("user/*.rs", fhir_user="Practitioner/dr-1"))
    reads = [e for e in audit_events(database) if e["subtype"][0]["code"] == "read"]
    assert reads
    e = reads[-1]
    assert e["type"]["code"] == "rest" and e["action"] == "R" and e["outcome"] == "0" and e["recorded"]
    user = next(a for a in e["agent"] if a["requestor"])
    assert user["who"]["reference"] == "Practitioner/dr-1"
    assert any(a["who"].get("identifier", {}).get("value") == "test-app" for a in e["agent"])
    whats = [ent["what"]["reference"] for ent in e["entity"] if "what" in ent]
    assert f"Patient/{p['id']}" in whats and f"Observation/{o['id']}/_history/1" in whats
    c.get(f"/fhir/Observation?subject=Patient/{p['id']}", headers=keys.headers("user/*.rs"))
    searches = [e for e in audit_events(database) if e["subtype"][0]["code"] == "search-type"]
    assert any(ent.get("what", {}).get("reference") == f"Patient/{p['id']}" for ent in searches[-1]["entity"])
    creates = [e for e in audit_events(database) if e["subtype"][0]["code"] == "create"]
    assert any(ent.get("what", {}).get("reference") == f"Observation/{o['id']}/_history/1"
               for e in creates for ent in e.get("entity", []))
    from ipt_fhir.services.validation import validate_for_write

    validate_for_write(dict(e), "AuditEvent")  # a valid R4 AuditEvent


def test_audit_events_are_searchable_by_patient_agent_and_date(secure_client, keys):
    c = secure_client
    p = patient(c, keys, "Searchable")
    c.get(f"/fhir/Patient/{p['id']}", headers=keys.headers("user/*.rs", fhir_user="Practitioner/dr-9"))
    h = keys.headers("user/AuditEvent.rs")
    by_patient = c.get(f"/fhir/AuditEvent?patient=Patient/{p['id']}", headers=h).json()
    assert by_patient["total"] >= 2  # the create and the read
    by_agent = c.get("/fhir/AuditEvent?agent=Practitioner/dr-9", headers=h).json()
    assert by_agent["total"] >= 1
    by_date = c.get("/fhir/AuditEvent?date=ge2000-01-01", headers=h).json()
    assert by_date["total"] >= 2


def test_audit_events_cannot_be_written_or_deleted_and_wildcards_do_not_read_them(secure_client, keys):
    c = secure_client
    p = patient(c, keys, "ReadOnlyAudit")
    h = keys.headers(ADMIN + " user/AuditEvent.cruds")
    some = c.get(f"/fhir/AuditEvent?patient=Patient/{p['id']}", headers=h).json()["entry"][0]["resource"]
    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2024-01-01T00:00:00Z",
             "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}}
    refused = [c.post("/fhir/AuditEvent", json=event, headers=h),
               c.put(f"/fhir/AuditEvent/{some['id']}", json=some, headers=h),
               c.delete(f"/fhir/AuditEvent/{some['id']}", headers=h),
               c.patch(f"/fhir/AuditEvent/{some['id']}", content=b"[]",
                       headers={**h, "Content-Type": "application/json-patch+json"})]
    for r in refused:  # a 405 names the methods that are served (RFC 9110 15.5.6)
        assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    tx = {"resourceType": "Bundle", "type": "transaction",
          "entry": [{"request": {"method": "DELETE", "url": f"AuditEvent/{some['id']}"}}]}
    r = c.post("/fhir", json=tx, headers=h)
    assert r.status_code in (403, 405)
    # the entry's Allow (GET, HEAD) is not that of /fhir; a 405 still carries one (RFC 9110 15.5.6): /fhir's
    assert r.headers.get("allow") == ("GET, HEAD, POST" if r.status_code == 405 else None)
    assert c.get(f"/fhir/AuditEvent/{some['id']}", headers=keys.headers("user/*.cruds")).status_code == 403
    assert c.get(f"/fhir/AuditEvent/{some['id']}", headers=h).status_code == 200


def test_failed_write_leaves_only_a_failure_audit(secure_client, keys, database):
    c = secure_client
    before = len(audit_events(database))
    r = c.post("/fhir/Observation", json={"resourceType": "Observation", "status": "bogus"}, headers=keys.headers(ADMIN))
    assert r.status_code in (400, 422)
    events = audit_events(database)[before:]
    assert events and all(e["outcome"] != "0" for e in events)


def test_the_audit_record_of_a_post_search_holds_its_form_parameters(secure_client, keys, database):
    """A POST _search's criteria travel in its body; the AuditEvent's query must show them all the same."""
    import base64

    c = secure_client
    p = patient(c, keys, "FormSearch")
    c.post("/fhir/Observation/_search", content=f"subject=Patient/{p['id']}".encode(),
           headers={**keys.headers("user/*.rs"), "Content-Type": "application/x-www-form-urlencoded"})
    searches = [e for e in audit_events(database) if e["subtype"][0]["code"] == "search-type"]
    queries = [base64.b64decode(ent["query"]).decode() for ent in searches[-1]["entity"] if "query" in ent]
    assert f"subject=Patient%2F{p['id']}" in queries


def test_the_audit_record_of_a_read_names_no_patient_of_another_server(secure_client, keys, database):
    """Observation.subject pointing at `http://other.example/fhir/Patient/<id>` is that server's patient,
    not ours with the same id: the read's AuditEvent names only patients of this server."""
    c = secure_client
    p = patient(c, keys, "Foreign")
    foreign = observation(c, keys, p["id"], subject={"reference": f"http://other.example/fhir/Patient/{p['id']}"})
    local = observation(c, keys, p["id"])
    reader = keys.headers("user/*.rs")
    for o in (foreign, local):
        assert c.get(f"/fhir/Observation/{o['id']}", headers=reader).status_code == 200
    reads = [e for e in audit_events(database) if e["subtype"][0]["code"] == "read"]

    def patients_named(event: dict) -> set[str]:
        return {ent["what"]["reference"] for ent in event["entity"]
                if ent.get("what", {}).get("reference", "").startswith("Patient/")}

    assert patients_named(reads[-2]) == set()
    assert patients_named(reads[-1]) == {f"Patient/{p['id']}"}
    forwarded = c.get(f"/fhir/Observation/{local['id']}", headers={
        **reader, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "ipt.example.org"})
    assert forwarded.status_code == 200
    last = [e for e in audit_events(database) if e["subtype"][0]["code"] == "read"][-1]
    server = next(a for a in last["agent"] if a["type"]["coding"][0]["code"] == "110152")
    assert server["network"]["address"] == "https://ipt.example.org/fhir"  # the base the client called


def test_a_conformance_search_filled_with_stored_matches_is_one_audit_event(secure_client, keys, database):
    """The server's own PlanDefinitions come first and stored ones fill the page: two queries of the
    store, one search, so one AuditEvent."""
    c = secure_client
    create(c, keys, {"resourceType": "PlanDefinition", "status": "draft", "title": "Stored plan"})
    before = len(audit_events(database))
    r = c.get("/fhir/PlanDefinition", headers=keys.headers("user/*.rs"))
    assert r.status_code == 200, r.text
    assert any(e["resource"].get("title") == "Stored plan" for e in r.json()["entry"])
    searches = [e for e in audit_events(database)[before:] if e["subtype"][0]["code"] == "search-type"]
    assert len(searches) == 1


def test_a_conformance_search_with_its_own_includes_is_one_audit_event(secure_client, keys, database):
    """A served protocol's _revinclude reads the store for the plans naming it: still one search, and its
    one AuditEvent names the patient of the included plan."""
    c = secure_client
    p = patient(c, keys, "Planned")
    create(c, keys, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                     "subject": {"reference": f"Patient/{p['id']}"},
                     "instantiatesCanonical": ["http://ipt-fhir.org/fhir/PlanDefinition/ipt-standard-individual"]})
    before = len(audit_events(database))
    r = c.get("/fhir/PlanDefinition?_id=ipt-standard-individual&_revinclude=CarePlan:instantiates-canonical",
              headers=keys.headers("user/*.rs"))
    assert r.status_code == 200, r.text
    assert [e["search"]["mode"] for e in r.json()["entry"]] == ["match", "include"]
    new = audit_events(database)[before:]
    assert len(new) == 1 and new[0]["subtype"][0]["code"] == "search-type"
    assert f"Patient/{p['id']}" in {ent["what"]["reference"] for ent in new[0]["entity"]
                                    if ent.get("what", {}).get("reference", "").startswith("Patient/")}


def test_the_servers_conformance_resources_are_read_and_written_under_their_interactions(secure_client, keys):
    """The scope checks see a read, a history, a search and an update on them (not an operation): a read
    token reads them and is refused the write before the write's 405."""
    c = secure_client
    read = keys.headers("user/PlanDefinition.rs")
    for url in ("/fhir/PlanDefinition/ipt-brief", "/fhir/PlanDefinition/ipt-brief/_history", "/fhir/PlanDefinition"):
        assert c.get(url, headers=read).status_code == 200, url
    assert c.get("/fhir/PlanDefinition/ipt-brief", headers=keys.headers("user/PlanDefinition.s")).status_code == 403
    body = c.get("/fhir/PlanDefinition/ipt-brief", headers=read).json()
    assert c.put("/fhir/PlanDefinition/ipt-brief", json=body, headers=read).status_code == 403
    assert c.put("/fhir/PlanDefinition/ipt-brief", json=body, headers=keys.headers("user/PlanDefinition.cruds")).status_code == 405


def test_meta_operations_answer_to_scopes_and_labels(secure_client, keys):
    """$meta-add and $meta-delete change a resource (write scopes; a sensitive label needs the sensitive
    scope, to set as to lift); $meta on a type reads every resource's labels, beyond a patient/ scope."""
    c = secure_client
    p = patient(c, keys, "Meta")
    obs = observation(c, keys, p["id"])
    label = {"resourceType": "Parameters", "parameter": [{"name": "meta", "valueMeta": {"security": [PSYTHPN]}}]}
    url = f"/fhir/Observation/{obs['id']}"
    assert c.post(f"{url}/$meta-add", json=label, headers=keys.headers("user/*.rs")).status_code == 403
    assert c.post(f"{url}/$meta-add", json=label, headers=keys.headers("user/*.cruds")).status_code == 403
    assert c.post(f"{url}/$meta-add", json=label, headers=keys.headers(ADMIN)).status_code == 200
    assert c.get(f"{url}/$meta", headers=keys.headers("user/*.rs")).status_code == 403  # now sensitive
    in_use = c.get("/fhir/Observation/$meta", headers=keys.headers("user/*.rs")).json()["parameter"][0]["valueMeta"]
    assert PSYTHPN not in in_use.get("security", [])  # a search would not show it either
    in_use = c.get("/fhir/Observation/$meta", headers=keys.headers(ADMIN)).json()["parameter"][0]["valueMeta"]
    assert PSYTHPN in in_use["security"]
    assert c.post(f"{url}/$meta-delete", json=label, headers=keys.headers("user/*.cruds")).status_code == 403
    assert c.post(f"{url}/$meta-delete", json=label, headers=keys.headers(ADMIN)).status_code == 200
    confined = keys.headers("patient/*.rs", patient=p["id"])
    assert c.get("/fhir/Observation/$meta", headers=confined).status_code == 403
    assert c.get("/fhir/Observation/$meta", headers=keys.headers("user/*.rs")).status_code == 200


def test_a_read_whose_audit_record_cannot_be_written_is_withheld_with_a_500_outcome(secure_client, keys,
                                                                                   monkeypatch):
    """No disclosure without an audit record: the patient's data never leaves; the answer is an
    OperationOutcome carrying the API's security headers."""
    from ipt_fhir.security import audit

    c = secure_client
    p = patient(c, keys, "Unaudited")

    def broken_flush(*args):  # noqa: ANN002
        raise OSError("audit store unavailable")

    monkeypatch.setattr(audit, "flush", broken_flush)
    r = c.get(f"/fhir/Patient/{p['id']}", headers=keys.headers("user/*.rs"))
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome" and "Unaudited" not in r.text
    assert r.json()["issue"][0]["diagnostics"] == "The access could not be audited"
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"


def test_everything_leaves_audit_events_out_and_never_follows_them_to_other_patients(secure_client, keys):
    """An AuditEvent of a search names every patient it returned, and sits in each one's compartment:
    followed to what it refers to, it put other patients' records in one patient's $everything."""
    c = secure_client
    a, b = patient(c, keys, "Everyone"), patient(c, keys, "Else")
    admin = keys.headers(ADMIN)
    assert c.get("/fhir/Patient", headers=admin).status_code == 200  # audited: names a and b
    bundle = c.get(f"/fhir/Patient/{a['id']}/$everything", headers=admin).json()
    found = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle.get("entry", [])
             if e["search"]["mode"] != "outcome"}
    assert ("Patient", a["id"]) in found and ("Patient", b["id"]) not in found
    assert not any(t == "AuditEvent" for t, _ in found)
    audited = c.get(f"/fhir/Patient/{a['id']}/$everything?_type=AuditEvent,Patient", headers=admin).json()
    types = {e["resource"]["resourceType"] for e in audited.get("entry", []) if e["search"]["mode"] != "outcome"}
    ids = {e["resource"]["id"] for e in audited.get("entry", [])}
    assert "AuditEvent" in types and b["id"] not in ids  # asked for, returned; still not followed


def _patients_named(event: dict) -> set[str]:
    """The patients an AuditEvent is about (entity role 1, Patient), not the resources it names."""
    return {ent["what"]["reference"] for ent in event.get("entity", []) if ent.get("role", {}).get("code") == "1"}


def test_an_access_of_two_patients_is_audited_once_for_each_and_no_patient_sees_the_other(
        secure_client, keys, database):
    """BALP (patient privacy): a search returning two patients' data is two AuditEvents, one per patient,
    each with the query. A single event naming both put one patient's name in the other's audit trail,
    which `patient/AuditEvent.rs` shows that patient."""
    c = secure_client
    a, b = patient(c, keys, "Ann"), patient(c, keys, "Ben")
    observation(c, keys, a["id"])
    observation(c, keys, b["id"])
    both = observation(c, keys, a["id"], performer=[{"reference": f"Patient/{b['id']}"}])  # in both compartments
    writes = [e for e in audit_events(database) if e["subtype"][0]["code"] == "create"
              and any(ent.get("what", {}).get("reference") == f"Observation/{both['id']}/_history/1"
                      for ent in e["entity"])]
    assert sorted(map(sorted, map(_patients_named, writes))) == sorted([[f"Patient/{a['id']}"], [f"Patient/{b['id']}"]])

    before = len(audit_events(database))
    r = c.get(f"/fhir/Observation?subject=Patient/{a['id']},Patient/{b['id']}", headers=keys.headers("user/*.rs"))
    assert r.status_code == 200 and r.json()["total"] == 3
    searches = [e for e in audit_events(database)[before:] if e["subtype"][0]["code"] == "search-type"]
    assert sorted(map(sorted, map(_patients_named, searches))) == sorted([[f"Patient/{a['id']}"], [f"Patient/{b['id']}"]])
    assert all(any("query" in ent for ent in e["entity"]) for e in searches)

    mine = c.get("/fhir/AuditEvent?_count=200", headers=keys.headers("patient/AuditEvent.rs", patient=a["id"]))
    assert mine.status_code == 200, mine.text
    events = [e["resource"] for e in mine.json()["entry"] if e["resource"]["resourceType"] == "AuditEvent"]
    assert events and all(_patients_named(e) == {f"Patient/{a['id']}"} for e in events)
