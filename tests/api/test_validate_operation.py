"""$validate: 200 with an OperationOutcome; problems are issues, never HTTP errors."""
from __future__ import annotations

from tests.api.test_crud import patient


def issues(r) -> list[dict]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def test_valid_resource_gives_one_information_issue(client):
    found = issues(client.post("/fhir/Patient/$validate", json=patient()))
    assert [i["severity"] for i in found] == ["information"]


def test_invalid_resource_gives_error_issues_with_expressions_and_200(client):
    found = issues(client.post("/fhir/Patient/$validate", json=patient(gender="yes", active="true")))
    errors = [i for i in found if i["severity"] == "error"]
    assert {e["expression"][0] for e in errors} >= {"Patient.gender", "Patient.active"}


def test_parameters_body_with_resource_and_mode(client):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient(birthDate="1974-13-01")},
        {"name": "mode", "valueCode": "create"}]}
    found = issues(client.post("/fhir/Patient/$validate", json=body))
    assert any(i["expression"] == ["Patient.birthDate"] for i in found if i["severity"] == "error")


def test_update_mode_checks_the_id_against_the_instance(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": patient(id="other")}, {"name": "mode", "valueCode": "update"}]}
    found = issues(client.post(f"/fhir/Patient/{rid}/$validate", json=body))
    assert any(i["severity"] == "error" and i["expression"] == ["Patient.id"] for i in found)


def test_validating_the_stored_instance_and_delete_mode(client):
    rid = client.post("/fhir/Patient", json=patient()).json()["id"]
    assert issues(client.get(f"/fhir/Patient/{rid}/$validate"))[0]["severity"] == "information"
    assert issues(client.get(f"/fhir/Patient/{rid}/$validate?mode=delete"))[0]["severity"] == "information"
    assert client.get("/fhir/Patient/nope/$validate").status_code == 404


def test_validate_writes_nothing(client):
    before = client.get("/fhir/_history").json()["total"]
    client.post("/fhir/Patient/$validate", json=patient())
    assert client.get("/fhir/_history").json()["total"] == before


def test_a_nominated_profile_the_server_cannot_check_is_an_error(client):
    """Resource-validate: "If a profile is nominated, and the server cannot validate against the nominated
    profile, it SHALL return an error." Also for core profiles it does not hold, such as vitalsigns."""
    for url in ("http://example.org/nope", "http://hl7.org/fhir/StructureDefinition/vitalsigns"):
        found = issues(client.post(f"/fhir/Patient/$validate?profile={url}", json=patient()))
        assert [(i["severity"], i["code"], i["expression"]) for i in found] == [("error", "not-supported", ["profile"])]
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "resource", "resource": patient()}, {"name": "profile", "valueUri": url}]}
        assert issues(client.post("/fhir/Patient/$validate", json=body))[0]["severity"] == "error"
    core = issues(client.post("/fhir/Patient/$validate?profile=http://hl7.org/fhir/StructureDefinition/Patient",
                              json=patient()))
    assert [i["severity"] for i in core] == ["information"]


def test_a_claimed_profile_the_server_does_not_know_is_a_warning(client):
    found = issues(client.post("/fhir/Patient/$validate", json=patient(meta={"profile": ["http://example.org/nope"]})))
    assert [(i["severity"], i["expression"]) for i in found] == [("warning", ["Patient.meta.profile[0]"])]


def test_bad_mode_is_400(client):
    assert client.post("/fhir/Patient/$validate?mode=bogus", json=patient()).status_code == 400


def test_a_resource_this_server_publishes_is_validated_not_refused_with_405(client):
    """$validate writes nothing, so a write the server would refuse outright (a PUT of a StructureDefinition
    it publishes: 405) is reported as issues of a 200: an error for mode=update, which names that write, a
    warning without a mode, which names none. A create ignores the body's id, so mode=create is judged on
    the content (here its canonical URL, which only the server's own copy may claim)."""
    served = client.get("/fhir/StructureDefinition/ipt-careplan").json()

    def severities(mode: str) -> dict[str, str]:
        found = issues(client.post(f"/fhir/StructureDefinition/$validate{mode}", json=served))
        return {i["diagnostics"]: i["severity"] for i in found}

    read_only = "StructureDefinition/ipt-careplan is published by this server and is read-only"
    assert severities("") == {read_only: "warning"}
    assert severities("?mode=update") == {read_only: "error"}
    create = severities("?mode=create")
    assert read_only not in create and list(create.values()) == ["error"], create
    assert "is published by this server; a stored resource cannot claim it" in next(iter(create))


def test_the_instance_form_validates_a_resource_this_server_publishes(client):
    """GET [type]/[id]/$validate reads the instance as a read would, the server's own IPT resources too (the
    /docs example validates a protocol); deleting one is refused, as its DELETE would be."""
    read_only = "PlanDefinition/ipt-standard-individual is published by this server and is read-only"
    found = issues(client.get("/fhir/PlanDefinition/ipt-standard-individual/$validate"))
    assert {i["diagnostics"]: i["severity"] for i in found} == {read_only: "warning"}
    delete = issues(client.get("/fhir/PlanDefinition/ipt-standard-individual/$validate", params={"mode": "delete"}))
    assert {i["diagnostics"]: i["severity"] for i in delete} == {read_only: "error"}
    assert client.get("/fhir/PlanDefinition/no-such-protocol/$validate").status_code == 404
