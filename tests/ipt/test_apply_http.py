"""PlanDefinition/[id]/$apply for every protocol: returned, and stored in one transaction."""
from __future__ import annotations

import pytest

from ipt_fhir.domain.protocols import all_protocols, get_protocol

from .helpers import progress, read

PROTOCOLS = [p.id for p in all_protocols()]


def params(*, store: bool = False, count: int | None = None, weekday: str | None = None, start="2025-01-06"):
    p = [{"name": "subject", "valueReference": {"reference": "Patient/p1"}},
         {"name": "practitioner", "valueReference": {"reference": "Practitioner/t1"}},
         {"name": "start", "valueDate": start}]
    if count is not None:
        p.append({"name": "sessionCount", "valueInteger": count})
    if weekday is not None:
        p.append({"name": "weekday", "valueCode": weekday})
    if store:
        p.append({"name": "store", "valueBoolean": True})
    return {"resourceType": "Parameters", "parameter": p}


@pytest.fixture(autouse=True)
def people(client):
    """The patient and therapist the applied courses name: a stored course must be about someone."""
    for resource in ({"resourceType": "Patient", "id": "p1"}, {"resourceType": "Practitioner", "id": "t1"}):
        assert client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource).status_code == 201


def by_type(bundle: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in bundle["entry"]:
        out.setdefault(e["resource"]["resourceType"], []).append(e["resource"])
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_apply_returns_the_course_as_a_transaction_bundle(client, protocol):
    r = client.post(f"/fhir/PlanDefinition/{protocol}/$apply", json=params())
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "transaction"
    found = by_type(bundle)
    assert len(found["CarePlan"]) == 1 and len(found["ServiceRequest"]) == 1
    assert len(found["Encounter"]) == get_protocol(protocol).typical_sessions
    assert all(e["fullUrl"].startswith("urn:uuid:") for e in bundle["entry"])
    assert client.get("/fhir/CarePlan").json()["total"] == 0  # nothing stored


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_apply_with_store_writes_plan_course_and_sessions_in_one_transaction(client, protocol):
    r = client.post(f"/fhir/PlanDefinition/{protocol}/$apply", json=params(store=True))
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "transaction-response"
    assert all(e["response"]["status"].startswith("201") for e in bundle["entry"])
    plans = client.get("/fhir/CarePlan").json()["entry"]
    assert len(plans) == 1
    plan = plans[0]["resource"]
    sessions = client.get("/fhir/Encounter", params={"_count": 100}).json()
    expected = get_protocol(protocol).typical_sessions
    assert sessions["total"] == expected
    course = client.get("/fhir/ServiceRequest", params={"based-on": f"CarePlan/{plan['id']}"}).json()
    assert course["total"] == 1
    figures = progress(client, plan["id"])
    assert figures["sessionsPlanned"] == expected and figures["sessionsAttended"] == 0
    assert figures["sessionsRemaining"] == expected
    assert figures["nextSession"]["sessionNumber"] == 1


def test_apply_honours_session_count_and_weekday(client):
    r = client.post("/fhir/PlanDefinition/ipt-standard-individual/$apply", json=params(count=12, weekday="wed"))
    sessions = by_type(r.json())["Encounter"]
    assert len(sessions) == 12
    from datetime import date
    assert {date.fromisoformat(s["period"]["start"][:10]).weekday() for s in sessions} == {2}


def test_apply_by_get_with_query_parameters(client):
    r = client.get("/fhir/PlanDefinition/ipt-brief/$apply",
                   params={"subject": "Patient/p1", "start": "2025-02-03", "sessionCount": "8"})
    assert r.status_code == 200
    assert len(by_type(r.json())["Encounter"]) == 8


def test_apply_by_get_cannot_store(client):
    r = client.get("/fhir/PlanDefinition/ipt-brief/$apply",
                   params={"subject": "Patient/p1", "start": "2025-02-03", "store": "true"})
    assert r.status_code == 400


def test_more_sessions_than_the_protocol_allows_is_422(client):
    r = client.post("/fhir/PlanDefinition/ipt-who-group/$apply", json=params(count=40, store=True))
    assert r.status_code == 422
    assert client.get("/fhir/CarePlan").json()["total"] == 0


def test_missing_or_bad_parameters_are_400(client):
    body = params()
    body["parameter"] = [p for p in body["parameter"] if p["name"] != "start"]
    assert client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=body).status_code == 400
    assert client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=params(weekday="funday")).status_code == 400


def test_unknown_plan_definition_is_404(client):
    assert client.post("/fhir/PlanDefinition/nope/$apply", json=params()).status_code == 404


def test_applied_plan_reads_back_with_its_profile_and_narrative(client):
    client.post("/fhir/PlanDefinition/ipt-standard-individual/$apply", json=params(store=True))
    plan = client.get("/fhir/CarePlan").json()["entry"][0]["resource"]
    stored = read(client, f"CarePlan/{plan['id']}")
    assert stored["meta"]["profile"][0].endswith("/StructureDefinition/ipt-careplan")
    assert 'class="ipt-fhir-generated"' in stored["text"]["div"]


def test_a_practitioner_that_is_no_practitioner_is_400(client):
    """It becomes each session's participant.individual, which takes no Patient (R4 Encounter)."""
    r = client.get("/fhir/PlanDefinition/ipt-who-group/$apply",
                   params={"subject": "Patient/p2", "start": "2025-03-03", "practitioner": "Patient/p1"})
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["practitioner"]
    role = client.get("/fhir/PlanDefinition/ipt-who-group/$apply",
                      params={"subject": "Patient/p2", "start": "2025-03-03", "practitioner": "PractitionerRole/r1"})
    assert role.status_code == 200, role.text
    sessions = by_type(role.json())["Encounter"]
    assert {s["participant"][0]["individual"]["reference"] for s in sessions} == {"PractitionerRole/r1"}


def test_a_course_shorter_than_its_protocol_is_stored_with_a_warning(client):
    protocol = get_protocol("ipt-standard-individual")
    short = protocol.min_sessions - 1
    r = client.post("/fhir/PlanDefinition/ipt-standard-individual/$apply", json=params(store=True, count=short),
                    headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 200, r.text
    outcomes = {e["response"]["location"].split("/")[0]: e["response"]["outcome"] for e in r.json()["entry"]}
    issues = [i for i in outcomes["ServiceRequest"]["issue"] if i["severity"] != "information"]
    assert [(i["severity"], i["expression"]) for i in issues] == [("warning", ["ServiceRequest.quantity"])]
    assert f"plans at least {protocol.min_sessions}" in issues[0]["diagnostics"]
    assert client.get("/fhir/Encounter").json()["total"] == short


def test_a_course_of_the_protocol_minimum_has_no_warning(client):
    protocol = get_protocol("ipt-standard-individual")
    r = client.post("/fhir/PlanDefinition/ipt-standard-individual/$apply",
                    json=params(store=True, count=protocol.min_sessions), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 200, r.text
    assert not [i for e in r.json()["entry"] for i in e["response"]["outcome"]["issue"] if i["severity"] != "information"]


@pytest.mark.parametrize("subject, practitioner, missing", [
    ("Patient/nope", "Practitioner/t1", "subject"), ("Patient/p1", "Practitioner/nope", "practitioner"),
    ("Patient/nope/_history/1", "Practitioner/t1", "subject")])
def test_a_stored_course_must_name_a_patient_and_therapist_who_exist(client, subject, practitioner, missing):
    body = params(store=True)
    body["parameter"][0]["valueReference"]["reference"] = subject
    body["parameter"][1]["valueReference"]["reference"] = practitioner
    r = client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == [missing]
    assert client.get("/fhir/CarePlan").json()["total"] == 0
    body["parameter"] = [p for p in body["parameter"] if p["name"] != "store"]
    assert client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=body).status_code == 200  # a preview may


def test_an_apply_parameter_the_operation_does_not_take_is_a_400(client):
    body = params()
    body["parameter"].append({"name": "encounter", "valueReference": {"reference": "Encounter/e1"}})
    r = client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=body)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["encounter"]
    assert "it takes subject, practitioner, start" in r.json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/PlanDefinition/ipt-brief/$apply", params={"subject": "Patient/p1", "start": "2025-01-06",
                                                                       "bogus": "1"}).status_code == 400


def test_a_second_open_plan_for_the_patient_is_stored_with_a_warning(client):
    """An $apply Bundle posted twice makes two open courses for one patient: most often a mistake."""
    first = client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=params(store=True),
                        headers={"Prefer": "return=OperationOutcome"})
    plan = lambda r: next(e["response"] for e in r.json()["entry"]  # noqa: E731
                          if e["response"]["location"].startswith("CarePlan/"))
    assert not [i for i in plan(first)["outcome"]["issue"] if "open IPT plan" in i["diagnostics"]]
    second = client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=params(store=True),
                         headers={"Prefer": "return=OperationOutcome"})
    assert second.status_code == 200, second.text
    found = [i for i in plan(second)["outcome"]["issue"] if "already has an open IPT plan" in i["diagnostics"]]
    first_id = plan(first)["location"].split("/")[1]
    assert [(i["severity"], i["expression"]) for i in found] == [("warning", ["CarePlan.status"])]
    assert f"CarePlan/{first_id}" in found[0]["diagnostics"]


@pytest.mark.parametrize("start", ["20250106", "2025-W02-1", "2025-01", "2025-01-06T10:00:00Z"])
def test_a_start_that_is_no_fhir_date_is_400(client, start):
    """start is a FHIR date, YYYY-MM-DD (its OperationDefinition): Python's own ISO parser also took the basic
    and week forms, and planned a course from them."""
    r = client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=params(start=start))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["start"]


@pytest.mark.parametrize("protocol", ["ipt-standard-individual", "ipt-maintenance"])  # weekly, monthly
def test_a_course_that_would_end_after_the_year_9999_is_400(client, protocol):
    """Its session dates cannot be written (a 500 before)."""
    r = client.post(f"/fhir/PlanDefinition/{protocol}/$apply", json=params(start="9999-12-01"))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["start"], r.text
    assert client.get(f"/fhir/PlanDefinition/{protocol}/$apply",
                      params={"subject": "Patient/p1", "start": "9999-12-31"}).status_code == 400


def test_a_parameter_given_twice_is_400_not_the_last_one_winning(client):
    """Every $apply parameter is 0..1: a second subject used to silently replace the first."""
    body = params()
    body["parameter"].append({"name": "subject", "valueReference": {"reference": "Patient/p2"}})
    r = client.post("/fhir/PlanDefinition/ipt-brief/$apply", json=body)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == [f"Parameters.parameter[{len(body['parameter']) - 1}]"]
    r = client.get("/fhir/PlanDefinition/ipt-brief/$apply?subject=Patient/p1&subject=Patient/p2&start=2025-01-06")
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["subject"]
