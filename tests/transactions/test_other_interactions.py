"""History, metadata and operations as batch and transaction entries (http.html#transaction: entries
"may be a mix of other interactions … or using the operations framework"): each entry is answered as
the standalone request is."""
from __future__ import annotations

import json

from tests.conftest import FIXTURES
from tests.transactions.conftest import post_bundle

HL7_TRANSACTION = FIXTURES / "hl7-r4-examples" / "bundles" / "Bundle-bundle-transaction.json"


def _entry(method: str, url: str, resource: dict | None = None) -> dict:
    e: dict = {"request": {"method": method, "url": url}}
    if resource is not None:
        e["resource"] = resource
    return e


def _bundle(*entries: dict, kind: str = "batch") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _answers(client, *entries: dict, kind: str = "batch") -> list[dict]:
    r = post_bundle(client, _bundle(*entries, kind=kind))
    assert r.status_code == 200, r.text
    return r.json()["entry"]


def _without_envelope(bundle: dict) -> dict:
    """A Bundle without what differs between two answers to the same request: its id, meta and links."""
    return {k: v for k, v in bundle.items() if k not in ("id", "meta", "link")}


def _issues(outcome: dict) -> list[tuple[str, str, str]]:
    """(severity, code, diagnostics) of each issue; entry errors prefix the diagnostics with the entry."""
    out = []
    for i in outcome["issue"]:
        diagnostics = i.get("diagnostics", "")
        if diagnostics.startswith("Bundle.entry["):
            diagnostics = diagnostics.split(": ", 1)[1]
        out.append((i["severity"], i["code"], diagnostics))
    return out


def _two_versions(client) -> None:
    assert client.put("/fhir/Patient/ord2", json={"resourceType": "Patient", "id": "ord2"}).status_code == 201
    assert client.put("/fhir/Patient/ord2", json={"resourceType": "Patient", "id": "ord2",
                                                  "gender": "female"}).status_code == 200
    assert client.put("/fhir/Practitioner/pr1", json={"resourceType": "Practitioner", "id": "pr1"}).status_code == 201


def test_history_entries_answer_as_the_history_interaction(client):
    _two_versions(client)
    urls = ["Patient/ord2/_history", "Patient/_history", "_history", "Patient/ord2/_history?_count=1",
            "Patient/_history?_since=2000-01-01T00:00:00Z"]
    entries = _answers(client, *[_entry("GET", u) for u in urls])
    for url, entry in zip(urls, entries):
        standalone = client.get(f"/fhir/{url}")
        assert standalone.status_code == 200
        assert entry["response"]["status"] == "200 OK"
        assert _without_envelope(entry["resource"]) == _without_envelope(standalone.json()), url
        # the standalone answer carries no ETag, Location or Last-Modified: neither does the entry
        assert set(entry["response"]) == {"status"}
    assert [e["response"]["etag"] for e in entries[0]["resource"]["entry"]] == ['W/"2"', 'W/"1"']
    assert entries[2]["resource"]["total"] == 3 + len(client.app.state.ipt_conformance.resources)


def test_history_entry_errors_are_the_standalone_errors(client):
    _two_versions(client)
    urls = ["Patient/unknown/_history", "Foo/_history", "Patient/_history?_count=x"]
    entries = _answers(client, *[_entry("GET", u) for u in urls])
    for url, entry in zip(urls, entries):
        standalone = client.get(f"/fhir/{url}")
        assert entry["response"]["status"] == str(standalone.status_code), url
        assert _issues(entry["response"]["outcome"]) == _issues(standalone.json()), url
    # a write to a history URL: the standalone 405, located at the entry's method
    entry = _answers(client, _entry("DELETE", "Patient/ord2/_history"))[0]
    assert entry["response"]["status"] == "405"
    standalone = client.delete("/fhir/Patient/ord2/_history")
    assert standalone.status_code == 405 and standalone.headers["Allow"] == "GET, HEAD"
    [issue] = entry["response"]["outcome"]["issue"]
    assert issue["expression"] == ["Bundle.entry[0].request.method"], issue
    assert issue["diagnostics"] == "Bundle.entry[0]: " + standalone.json()["issue"][0]["diagnostics"], issue
    assert issue["diagnostics"].endswith("DELETE is not allowed on /fhir/Patient/ord2/_history; allowed: GET, HEAD")


def test_metadata_entry_is_the_capability_statement(client):
    entry = _answers(client, _entry("GET", "metadata"))[0]
    assert entry["response"]["status"] == "200 OK"
    assert entry["resource"] == client.get("/fhir/metadata").json()


def test_metadata_entries_take_the_mode_the_route_takes(client):
    terminology, contradictory = _answers(client, _entry("GET", "metadata?mode=terminology"),
                                          _entry("GET", "metadata?mode=full&mode=terminology"))
    assert terminology["resource"] == client.get("/fhir/metadata?mode=terminology").json()
    assert contradictory["response"]["status"].startswith("400")


def test_validate_entries_answer_as_validate(client):
    _two_versions(client)
    bad = {"resourceType": "Patient", "gender": "x", "birthDate": "1980-13-01"}
    good = {"resourceType": "Patient", "gender": "male"}
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": bad},
                                                              {"name": "mode", "valueCode": "create"}]}
    cases = [("POST", "Patient/$validate", bad), ("POST", "Patient/$validate", good),
             ("POST", "Patient/$validate", parameters), ("GET", "Patient/ord2/$validate", None),
             ("POST", "Patient/ord2/$validate?mode=update", {"resourceType": "Patient", "id": "ord2"})]
    entries = _answers(client, *[_entry(m, u, b) for m, u, b in cases])
    for (method, url, body), entry in zip(cases, entries):
        standalone = client.request(method, f"/fhir/{url}", json=body) if body is not None \
            else client.request(method, f"/fhir/{url}")
        assert standalone.status_code == 200
        assert entry["response"]["status"] == "200 OK", entry
        assert entry["resource"] == standalone.json(), url
    assert any(i["severity"] == "error" for i in entries[0]["resource"]["issue"])
    # $validate writes nothing, in a batch as on its own
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1


def test_validate_entry_method_and_type_errors_are_the_standalone_ones(client):
    cases = [("GET", "Patient/$validate", None), ("POST", "Foo/$validate", {"resourceType": "Patient"})]
    entries = _answers(client, *[_entry(m, u, b) for m, u, b in cases])
    for (method, url, body), entry in zip(cases, entries):
        standalone = client.request(method, f"/fhir/{url}", json=body) if body is not None \
            else client.request(method, f"/fhir/{url}")
        assert entry["response"]["status"] == str(standalone.status_code), url
        assert _issues(entry["response"]["outcome"]) == _issues(standalone.json()), url


def test_everything_and_progress_entries(client):
    _two_versions(client)
    client.post("/fhir/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                           "subject": {"reference": "Patient/ord2"}})
    entries = _answers(client, _entry("GET", "Patient/ord2/$everything"),
                       _entry("GET", "Patient/ord2/$everything?_type=Observation"),
                       _entry("GET", "Patient/nobody/$everything"),
                       _entry("GET", "CarePlan/none/$ipt-progress"))
    for entry, url in zip(entries[:2], ["Patient/ord2/$everything", "Patient/ord2/$everything?_type=Observation"]):
        assert entry["response"]["status"] == "200 OK"
        assert _without_envelope(entry["resource"]) == _without_envelope(client.get(f"/fhir/{url}").json())
    assert entries[0]["resource"]["total"] == 2 and entries[1]["resource"]["total"] == 1
    for entry, url in zip(entries[2:], ["Patient/nobody/$everything", "CarePlan/none/$ipt-progress"]):
        standalone = client.get(f"/fhir/{url}")
        assert entry["response"]["status"] == str(standalone.status_code) == "404"
        assert _issues(entry["response"]["outcome"]) == _issues(standalone.json())


def test_unknown_operation_gets_the_standalone_404(client):
    body = {"resourceType": "Parameters", "parameter": [{"name": "code", "valueCode": "x"}]}
    entry = _answers(client, _entry("POST", "ValueSet/$lookup", body), _entry("GET", "Patient/ord2/$nothing"))
    for e, (method, url) in zip(entry, [("POST", "ValueSet/$lookup"), ("GET", "Patient/ord2/$nothing")]):
        standalone = client.request(method, f"/fhir/{url}", json=body)
        assert standalone.status_code == 404
        assert e["response"]["status"] == "404"
        assert _issues(e["response"]["outcome"]) == _issues(standalone.json())
    # in a transaction the unsupported operation fails the transaction, with that status, naming the entry
    r = post_bundle(client, _bundle(_entry("POST", "Patient", {"resourceType": "Patient"}),
                                    _entry("POST", "ValueSet/$lookup", body), kind="transaction"))
    assert r.status_code == 404, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].request.url"]
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 0


def test_hl7_transaction_example(client):
    example = json.loads(HL7_TRANSACTION.read_text())
    # As a transaction it fails on the operation this server does not have, as POST ValueSet/$lookup does
    r = post_bundle(client, example)
    assert r.status_code == 404, r.text
    assert r.json()["issue"][0]["expression"][0].startswith("Bundle.entry[7]")
    # As a batch, every entry is answered; the $lookup entry as the standalone request is
    batch = dict(example, type="batch")
    r = post_bundle(client, batch)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert len(entries) == len(example["entry"])
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[7]["response"]["status"] == "404"
    standalone = client.post("/fhir/ValueSet/$lookup", json=example["entry"][7]["resource"])
    assert _issues(entries[7]["response"]["outcome"]) == _issues(standalone.json())
    assert entries[8]["response"]["status"] == "200 OK"


def test_transaction_runs_read_only_entries_last_inside_its_unit_of_work(client):
    _two_versions(client)
    entries = _answers(
        client,
        _entry("GET", "Patient/ord2/_history"),
        _entry("POST", "Patient/$validate", {"resourceType": "Patient", "gender": "x"}),
        _entry("GET", "Patient/_history"),
        _entry("PUT", "Patient/ord2", {"resourceType": "Patient", "id": "ord2", "gender": "male"}),
        _entry("GET", "Patient/ord2/$everything"),
        _entry("GET", "metadata"),
        kind="transaction")
    # the GET entries came after the PUT: they see its version
    assert entries[0]["resource"]["total"] == 3
    assert entries[0]["resource"]["entry"][0]["resource"]["gender"] == "male"
    assert entries[2]["resource"]["total"] == 3
    assert entries[4]["resource"]["entry"][0]["resource"]["gender"] == "male"
    assert entries[1]["resource"]["resourceType"] == "OperationOutcome"
    assert entries[3]["response"]["status"] == "200 OK"
    assert entries[5]["resource"]["resourceType"] == "CapabilityStatement"
    # a failing read-only entry fails the transaction and rolls the write back
    r = post_bundle(client, _bundle(_entry("PUT", "Patient/ord2", {"resourceType": "Patient", "id": "ord2"}),
                                    _entry("GET", "Patient/nobody/_history"), kind="transaction"))
    assert r.status_code == 404, r.text
    assert client.get("/fhir/Patient/ord2").json()["meta"]["versionId"] == "3"


def _apply_parameters(store: bool) -> dict:
    return {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueReference": {"reference": "Patient/ord2"}},
        {"name": "practitioner", "valueReference": {"reference": "Practitioner/pr1"}},
        {"name": "start", "valueDate": "2025-03-03"}, {"name": "sessionCount", "valueInteger": 8},
        {"name": "store", "valueBoolean": store}]}


def test_apply_that_stores_runs_in_a_batch_and_is_refused_in_a_transaction(client):
    _two_versions(client)
    url = "PlanDefinition/ipt-standard-individual/$apply"
    r = post_bundle(client, _bundle(_entry("POST", url, _apply_parameters(True)), kind="transaction"))
    assert r.status_code == 400, r.text
    assert "unit of work" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/CarePlan?_summary=count").json()["total"] == 0

    plain, stored = _answers(client, _entry("POST", url, _apply_parameters(False)),
                             _entry("POST", url, _apply_parameters(True)))
    assert plain["response"]["status"] == "200 OK" and plain["resource"]["type"] == "transaction"
    assert stored["response"]["status"] == "200 OK"
    assert stored["resource"]["type"] == "transaction-response"
    assert client.get("/fhir/CarePlan?_summary=count").json()["total"] == 1
    # $apply without store writes nothing: as an entry of a transaction it runs with the reads
    entry = _answers(client, _entry("POST", url, _apply_parameters(False)), kind="transaction")[0]
    assert entry["resource"]["type"] == "transaction"


def test_bulk_operations_are_refused_as_entries(client):
    entries = _answers(client, _entry("GET", "$export"), _entry("GET", "Patient/$export"),
                       _entry("POST", "$import", {"resourceType": "Parameters"}))
    assert [e["response"]["status"] for e in entries] == ["400", "400", "400"]
