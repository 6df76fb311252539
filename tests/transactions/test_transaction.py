"""Transaction Bundles (http://hl7.org/fhir/R4/http.html#transaction): atomic, spec order, urn:uuid and
conditional references, per-entry conditions, deferred business-rule checks."""
from __future__ import annotations

import base64
import json

import pytest

from ipt_fhir.fhir.outcome import error
from tests.transactions.conftest import SYNTHEA_BUNDLES, created, post_bundle, synthea_bundle, table_counts

NPI = "http://hl7.org/fhir/sid/us-npi"


def tx(*entries: dict, kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict, full_url: str | None = None, **request) -> dict:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict, url: str | None = None, **request) -> dict:
    return {"resource": resource,
            "request": {"method": "PUT", "url": url or f"{resource['resourceType']}/{resource['id']}", **request}}


def patient(**extra) -> dict:
    return {"resourceType": "Patient", "name": [{"family": "Chalmers"}], **extra}


def practitioner(npi: str, **extra) -> dict:
    return {"resourceType": "Practitioner", "identifier": [{"system": NPI, "value": npi}], **extra}


def test_every_synthea_bundle_loads_and_its_care_plans_goals_and_encounters_are_searchable_by_patient(client):
    for path in SYNTHEA_BUNDLES:
        raw = json.loads(synthea_bundle(path))
        expected = {}
        for e in raw["entry"]:
            expected[e["resource"]["resourceType"]] = expected.get(e["resource"]["resourceType"], 0) + 1
        r = post_bundle(client, synthea_bundle(path), Prefer="return=minimal")
        assert r.status_code == 200, (path.name, r.text[:2000])
        out = r.json()
        assert out["type"] == "transaction-response"
        assert len(out["entry"]) == len(raw["entry"])
        assert all(e["response"]["status"] == "201 Created" for e in out["entry"])
        patient_id = out["entry"][[e["resource"]["resourceType"] for e in raw["entry"]].index("Patient")][
            "response"]["location"].split("/")[1]
        for rtype in ("CarePlan", "Goal", "Encounter"):
            found = client.get(f"/fhir/{rtype}?patient={patient_id}&_count=1000&_summary=count").json()
            assert found["total"] == expected.get(rtype, 0), (path.name, rtype)
    # references were rewritten from urn:uuid to the server's ids
    some_plan = client.get("/fhir/CarePlan?_count=1").json()["entry"][0]["resource"]
    assert some_plan["subject"]["reference"].startswith("Patient/")
    assert client.get(f"/fhir/{some_plan['subject']['reference']}").status_code == 200


def test_a_transaction_whose_last_entry_fails_leaves_the_database_unchanged(client, database):
    client.post("/fhir/Patient", json=patient())
    before = table_counts(database)
    bundle = json.loads(synthea_bundle(SYNTHEA_BUNDLES[0]))
    bundle["entry"][-1]["resource"]["status"] = "not-a-status"
    r = post_bundle(client, bundle)
    assert r.status_code == 400
    assert f"Bundle.entry[{len(bundle['entry']) - 1}]" in r.text
    assert table_counts(database) == before


def test_a_failure_found_while_writing_rolls_back_everything_and_names_the_entry(client, database):
    before = table_counts(database)
    bundle = tx(
        post(patient(), "urn:uuid:11111111-1111-1111-1111-111111111111"),
        put(patient(id="p2")),
        {"resource": patient(id="p3"), "request": {"method": "PUT", "url": "Patient/p3", "ifMatch": 'W/"4"'}},
    )
    r = post_bundle(client, bundle)
    assert r.status_code == 412
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[2]" in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["expression"][0].startswith("Bundle.entry[2]")
    assert table_counts(database) == before


def test_urn_uuid_and_urn_oid_references_are_rewritten_everywhere(client):
    pat, org = "urn:uuid:3c3b5ff4-8f5c-4d4e-9b0a-111111111111", "urn:oid:1.2.3.4.5"
    observation = {
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": pat},
        "performer": [{"reference": "#p"}],
        "contained": [{"resourceType": "Practitioner", "id": "p",
                       "extension": [{"url": "http://example.org/employer", "valueReference": {"reference": org}}]}],
        "extension": [{"url": "http://example.org/about", "valueReference": {"reference": pat}}],
    }
    r = post_bundle(client, tx(post(observation), post(patient(), pat),
                               post({"resourceType": "Organization", "name": "Acme"}, org)))
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    pid = entries[1]["response"]["location"].split("/")[1]
    oid = entries[2]["response"]["location"].split("/")[1]
    stored = client.get("/fhir/" + entries[0]["response"]["location"].rsplit("/_history", 1)[0]).json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"
    assert stored["extension"][0]["valueReference"]["reference"] == f"Patient/{pid}"
    assert stored["contained"][0]["extension"][0]["valueReference"]["reference"] == f"Organization/{oid}"
    assert stored["performer"][0]["reference"] == "#p"
    assert client.get(f"/fhir/Observation?subject=Patient/{pid}").json()["total"] == 1


def test_a_reference_to_an_unknown_urn_is_rejected(client):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "urn:uuid:3c3b5ff4-8f5c-4d4e-9b0a-222222222222"}}
    r = post_bundle(client, tx(post(patient()), post(obs)))
    assert r.status_code == 404 and "Bundle.entry[1]" in r.text


def test_a_placeholder_resolving_to_a_type_its_element_does_not_allow_is_rejected(client, database):
    """Validation sees only `urn:uuid:…`; once the placeholder is rewritten its type is known, and
    Observation.subject allows no Medication (as a direct POST with Medication/x is refused)."""
    med = "urn:uuid:3c3b5ff4-8f5c-4d4e-9b0a-333333333333"
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": med}, "hasMember": [{"reference": med}]}
    before = table_counts(database)
    r = post_bundle(client, tx(post({"resourceType": "Medication"}, med), post(obs)))
    assert r.status_code == 400 and table_counts(database) == before
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    # hasMember allows Observation, QuestionnaireResponse, MolecularSequence: a Medication is refused there too
    obs["subject"] = {"reference": "urn:uuid:3c3b5ff4-8f5c-4d4e-9b0a-444444444444"}
    r = post_bundle(client, tx(post({"resourceType": "Medication"}, med), post(patient(), obs["subject"]["reference"]),
                               post(obs)))
    assert r.status_code == 400 and table_counts(database) == before
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[2].resource.hasMember[0].reference"]


@pytest.mark.parametrize("declared, status", [("Group", 400), ("Patient", 200)])
def test_a_placeholder_must_agree_with_its_references_declared_type(client, database, declared, status):
    """Reference.type and the reference SHALL be consistent (as on a direct POST, tests/api/test_crud.py):
    a placeholder's type is known only once it is rewritten, and is checked then."""
    pid = "urn:uuid:3c3b5ff4-8f5c-4d4e-9b0a-555555555555"
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": pid, "type": declared}}
    before = table_counts(database)
    r = post_bundle(client, tx(post(patient(), pid), post(obs)))
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject.reference"]
        assert table_counts(database) == before


def test_conditional_references_resolve_to_exactly_one_match(client):
    pr = client.post("/fhir/Practitioner", json=practitioner("111")).json()["id"]
    client.post("/fhir/Practitioner", json=practitioner("222"))
    client.post("/fhir/Practitioner", json=practitioner("222"))
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|111"}}]}
    r = post_bundle(client, tx(post(enc)))
    assert r.status_code == 200, r.text
    stored = client.get("/fhir/" + r.json()["entry"][0]["response"]["location"].rsplit("/_history", 1)[0]).json()
    assert stored["participant"][0]["individual"]["reference"] == f"Practitioner/{pr}"

    enc["participant"][0]["individual"]["reference"] = f"Practitioner?identifier={NPI}|333"
    r = post_bundle(client, tx(post(patient()), post(enc)))
    assert r.status_code == 404 and "Bundle.entry[1]" in r.text
    enc["participant"][0]["individual"]["reference"] = f"Practitioner?identifier={NPI}|222"
    r = post_bundle(client, tx(post(enc)))
    assert r.status_code == 412 and "exactly one" in r.text


def test_a_conditional_reference_is_a_search_on_this_server_only(client):
    """http.html#trules: "The search URI is relative to the server's [base] path". The same search on
    another server names no resource here: it is refused, not pointed at whatever matches locally."""
    pr = client.post("/fhir/Practitioner", json=practitioner("444")).json()["id"]
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": f"http://other.example.org/fhir/Practitioner?identifier={NPI}|444"}}]}
    r = post_bundle(client, tx(post(patient()), post(enc)))
    assert r.status_code == 400 and "another server" in r.text, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.participant[0].individual.reference"]
    assert client.get("/fhir/Encounter?_summary=count").json()["total"] == 0
    enc["participant"][0]["individual"]["reference"] = f"http://testserver/fhir/Practitioner?identifier={NPI}|444"
    r = post_bundle(client, tx(post(enc)))
    assert r.status_code == 200, r.text
    stored = client.get("/fhir/" + r.json()["entry"][0]["response"]["location"].rsplit("/_history", 1)[0]).json()
    assert stored["participant"][0]["individual"]["reference"] == f"Practitioner/{pr}"


def test_a_conditional_reference_can_name_a_resource_created_earlier_in_the_same_transaction(client):
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": f"Practitioner?identifier={NPI}|999"}}]}
    # PUT entries are processed after POST entries: the practitioner exists when the encounter is written
    r = post_bundle(client, tx(put(dict(enc, id="e1")), post(practitioner("999"))))
    assert r.status_code == 200, r.text
    pr = r.json()["entry"][1]["response"]["location"].split("/")[1]
    assert client.get("/fhir/Encounter/e1").json()["participant"][0]["individual"]["reference"] == f"Practitioner/{pr}"


def test_if_none_exist_reuses_the_match_and_references_point_to_it(client):
    existing = client.post("/fhir/Patient", json=patient(identifier=[{"system": "urn:s", "value": "1"}])).json()["id"]
    pat = "urn:uuid:3c3b5ff4-8f5c-4d4e-9b0a-333333333333"
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": pat}}
    r = post_bundle(client, tx(post(patient(identifier=[{"system": "urn:s", "value": "1"}]), pat,
                                    ifNoneExist="identifier=urn:s|1"), post(obs)))
    assert r.status_code == 200, r.text
    first, second = r.json()["entry"]
    assert first["response"]["status"] == "200 OK"
    assert first["response"]["location"].startswith(f"Patient/{existing}/")
    oid = second["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{existing}"
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1


def test_conditional_update_and_if_match_per_entry(client):
    pid = client.post("/fhir/Patient", json=patient(identifier=[{"system": "urn:s", "value": "7"}])).json()["id"]
    r = post_bundle(client, tx(
        put(patient(gender="female"), "Patient?identifier=urn:s|7"),
        {"resource": patient(id="q1"), "request": {"method": "PUT", "url": "Patient/q1"}},
    ))
    assert r.status_code == 200, r.text
    e0, e1 = r.json()["entry"]
    assert e0["response"]["status"] == "200 OK" and e0["response"]["etag"] == 'W/"2"'
    assert e0["response"]["location"].startswith(f"Patient/{pid}/_history/2")
    assert e1["response"]["status"] == "201 Created"
    r = post_bundle(client, tx({"resource": patient(id="q1", gender="male"),
                                "request": {"method": "PUT", "url": "Patient/q1", "ifMatch": 'W/"1"'}}))
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["etag"] == 'W/"2"'
    r = post_bundle(client, tx({"resource": patient(id="q1"),
                                "request": {"method": "PUT", "url": "Patient/q1", "ifMatch": 'W/"1"'}}))
    assert r.status_code == 412


def test_entries_are_processed_delete_post_put_get_and_answered_in_entry_order(client):
    client.put("/fhir/Patient/old", json=patient(id="old"))
    client.put("/fhir/Patient/keep", json=patient(id="keep"))
    patch = [{"op": "add", "path": "/gender", "value": "other"}]
    r = post_bundle(client, tx(
        {"request": {"method": "GET", "url": "Patient/keep"}},
        {"request": {"method": "GET", "url": "Patient?_summary=count"}},
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                      "data": base64.b64encode(json.dumps(patch).encode()).decode()},
         "request": {"method": "PATCH", "url": "Patient/keep"}},
        post(patient()),
        {"request": {"method": "DELETE", "url": "Patient/old"}},
    ))
    assert r.status_code == 200, r.text
    get_one, count, patched, posted, deleted = r.json()["entry"]
    assert get_one["resource"]["gender"] == "other"  # GET runs after the PATCH
    assert patched["response"]["status"] == "200 OK"
    assert posted["response"]["status"] == "201 Created"
    assert deleted["response"]["status"] == "204 No Content"
    assert count["resource"]["type"] == "searchset"
    assert client.get("/fhir/Patient/old").status_code == 410


@pytest.mark.parametrize("flavour", ["FHIRPath Patch", "JSON Patch"])
def test_a_patch_may_link_to_a_resource_the_transaction_creates(client, flavour):
    """http.html#trules: every reference to an entry's fullUrl is replaced by the new id, also the ones a
    patch adds."""
    client.put("/fhir/Patient/pq", json=patient(id="pq"))
    gp = "urn:uuid:5b7a4a36-9f40-4b5e-8a9e-000000000042"
    if flavour == "JSON Patch":
        ops = [{"op": "add", "path": "/generalPractitioner", "value": [{"reference": gp}]}]
        body = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": base64.b64encode(json.dumps(ops).encode()).decode()}
    else:
        body = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "generalPractitioner"},
            {"name": "value", "valueReference": {"reference": gp}}]}]}
    r = post_bundle(client, tx(post({"resourceType": "Practitioner", "name": [{"family": "Weiss"}]}, gp),
                               {"resource": body, "request": {"method": "PATCH", "url": "Patient/pq"}}))
    assert r.status_code == 200, r.text
    linked = client.get("/fhir/Patient/pq").json()["generalPractitioner"][0]["reference"]
    assert linked == created(r, 0)


def test_read_entries_keep_their_resource_under_prefer_minimal_and_take_elements(client):
    """Prefer: return= is about the answer to a create, update or patch (http.html#ops); a read entry
    answers as GET [type]/[id] does, _elements and _summary included."""
    client.put("/fhir/Patient/rd", json=patient(id="rd", gender="female"))
    r = post_bundle(client, tx({"request": {"method": "GET", "url": "Patient/rd"}},
                               {"request": {"method": "GET", "url": "Patient/rd?_elements=gender"}},
                               post(patient())),
                    Prefer="return=minimal")
    assert r.status_code == 200, r.text
    full, subset, posted = r.json()["entry"]
    assert full["resource"]["name"] == [{"family": "Chalmers"}]
    assert subset["resource"]["gender"] == "female" and "name" not in subset["resource"]
    assert subset["resource"]["meta"]["tag"][0]["code"] == "SUBSETTED"
    assert "resource" not in posted and posted["response"]["status"] == "201 Created"


def test_search_entries_see_the_writes_of_their_own_transaction(client):
    client.put("/fhir/Patient/gone", json=patient(id="gone", identifier=[{"system": "urn:t", "value": "a"}]))
    r = post_bundle(client, tx(
        {"request": {"method": "GET", "url": "Patient?identifier=urn:t|a,urn:t|b"}},
        post(patient(identifier=[{"system": "urn:t", "value": "b"}])),
        {"request": {"method": "DELETE", "url": "Patient/gone"}},
    ))
    assert r.status_code == 200, r.text
    found = r.json()["entry"][0]["resource"]
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["identifier"][0]["value"] == "b"


def test_system_and_compartment_search_entries_see_the_writes_of_their_own_transaction(client):
    """A transaction's GET entries take system (`?_type=...`) and compartment (`Patient/[id]/[type]`)
    searches as a batch's do, and run after its writes (http.html#trules: DELETE, POST, PUT/PATCH, then
    GET): listed before the POST, they find the Observation it creates, and answer as the standalone
    searches do afterwards."""
    client.put("/fhir/Patient/sc1", json=patient(id="sc1"))
    client.put("/fhir/Patient/sc2", json=patient(id="sc2"))
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    before = client.post("/fhir/Observation", json=dict(obs, subject={"reference": "Patient/sc1"})).json()["id"]
    client.post("/fhir/Observation", json=dict(obs, subject={"reference": "Patient/sc2"}))  # another patient's: found by neither search
    urls = ["?_type=Observation&patient=sc1", "Patient/sc1/Observation"]
    r = post_bundle(client, tx(*[{"request": {"method": "GET", "url": u}} for u in urls],
                               post(dict(obs, subject={"reference": "Patient/sc1"}))))
    assert r.status_code == 200, r.text
    system, compartment, posted = r.json()["entry"]
    assert posted["response"]["status"] == "201 Created"
    new = created(r, 2).split("/")[1]
    for url, searchset in zip(urls, (system["resource"], compartment["resource"])):
        assert searchset["type"] == "searchset", url
        assert sorted(e["resource"]["id"] for e in searchset["entry"]) == sorted([before, new]), url
        assert {e["resource"]["resourceType"] for e in searchset["entry"]} == {"Observation"}, url
        assert searchset["total"] == 2, url
        rest = client.get(f"/fhir/{url}")
        assert rest.status_code == 200, url
        rest = rest.json()
        assert rest["total"] == searchset["total"], url
        assert sorted(rest["entry"], key=lambda e: e["fullUrl"]) == \
            sorted(searchset["entry"], key=lambda e: e["fullUrl"]), url


def test_two_entries_on_the_same_resource_are_rejected(client):
    r = post_bundle(client, tx(put(patient(id="a")), {"request": {"method": "DELETE", "url": "Patient/a"}}))
    assert r.status_code == 400 and "Bundle.entry[1]" in r.text


def test_bundle_entry_and_size_limits_answer_413(client, app):
    app.state.settings.max_bundle_entries = 2
    app.state.__dict__.pop("bundle_service", None)
    try:
        r = post_bundle(client, tx(post(patient()), post(patient()), post(patient())))
        assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"
    finally:
        app.state.settings.max_bundle_entries = 20000
        app.state.__dict__.pop("bundle_service", None)
    big = json.dumps(tx(post(patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">"
                                                                     + "x" * (17 * 1024 * 1024) + "</div>"})))).encode()
    r = client.post("/fhir", content=big, headers={"content-type": "application/fhir+json"})
    assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"


class _EncounterNeedsPlan:
    """A cross-resource rule like the IPT ones: an Encounter's basedOn ServiceRequest must exist."""

    def check(self, conn, change):
        from ipt_fhir.store import resources as repo

        if change.resource_type != "Encounter" or change.resource is None:
            return []
        for ref in change.resource.get("basedOn", []):
            t, _, i = ref["reference"].partition("/")
            stored = repo.current(conn, t, i)
            if stored is None or stored.deleted:
                return [error("business-rule", f"{ref['reference']} does not exist", "Encounter.basedOn")]
        return []

    def after_write(self, conn, change):
        pass


def test_rule_checks_run_after_every_entry_is_written(client, hook_registry, database):
    hook_registry(_EncounterNeedsPlan())
    plan_url = "urn:uuid:3c3b5ff4-8f5c-4d4e-9b0a-444444444444"
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                 "basedOn": [{"reference": plan_url}]}
    plan = {"resourceType": "ServiceRequest", "status": "active", "intent": "plan",
            "subject": {"reference": "Patient/x"}}
    r = post_bundle(client, tx(post(encounter), post(plan, plan_url)))
    assert r.status_code == 200, r.text
    before = table_counts(database)
    encounter["basedOn"] = [{"reference": "ServiceRequest/missing"}]
    r = post_bundle(client, tx(post(plan), post(encounter)))
    assert r.status_code == 422 and "Bundle.entry[1]" in r.text, r.text
    assert table_counts(database) == before


@pytest.mark.parametrize("bundle,status", [
    ({"resourceType": "Bundle", "type": "collection"}, 400),
    ({"resourceType": "Patient"}, 400),
    (tx({"request": {"method": "POST", "url": "Nope"}, "resource": {"resourceType": "Nope"}}), 404),
    (tx({"request": {"method": "PUT", "url": "Patient"}, "resource": patient()}), 400),
])
def test_malformed_bundles_are_refused_with_an_outcome(client, bundle, status):
    r = post_bundle(client, bundle)
    assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome"


def test_a_conditional_update_matching_what_a_create_of_the_bundle_makes_fails_the_transaction(client):
    """http.html#trules processes POSTs before PUTs: after the create, the criteria match its resource, so
    two entries act on one resource and the transaction SHALL fail; it left two Patients with the one
    identifier the client meant to keep unique. (A conditional patch matching nothing already fails: 404.)"""
    ident = {"system": "urn:mrn", "value": "Y"}
    conditional = put(patient(identifier=[ident], active=True), "Patient?identifier=urn:mrn|Y")
    r = post_bundle(client, tx(conditional, post(patient(identifier=[ident]))))
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[0].request.url"] and "entry 1 writes" in issue["diagnostics"]
    assert client.get("/fhir/Patient", params={"identifier": "urn:mrn|Y"}).json()["total"] == 0
    alone = post_bundle(client, tx(put(patient(identifier=[ident]), "Patient?identifier=urn:mrn|Y")))
    assert alone.status_code == 200  # on its own the conditional update creates, as before


@pytest.mark.parametrize("other", ["by id", "conditional"])
def test_a_conditional_update_matching_what_another_update_of_the_bundle_writes_fails_it(client, other):
    """The same rule for the other writes: a PUT by id, or a second conditional update that creates, whose
    resource the first one's criteria then match."""
    ident = {"system": "urn:mrn", "value": "Z"}
    first = put(patient(identifier=[ident], active=True), "Patient?identifier=urn:mrn|Z")
    second = put(patient(id="pz", identifier=[ident])) if other == "by id" else \
        put(patient(identifier=[ident], gender="male"), "Patient?identifier=urn:mrn|Z&gender=male")
    r = post_bundle(client, tx(first, second))
    assert r.status_code == 400, r.text
    assert "two entries of a transaction cannot act on one resource" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient", params={"identifier": "urn:mrn|Z"}).json()["total"] == 0
