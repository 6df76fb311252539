"""A real FHIR client against a served ipt-fhir: the SMART on FHIR Python client (`fhirclient`).

Its R4 models parse strictly: an element R4 does not define, a value of the wrong JSON type or a missing
required element is an error. So beside the client's own create, read, update, search and delete, every
kind of resource the server composes itself (CapabilityStatement, Bundles of each type, OperationOutcomes
of each status, Parameters, the IPT conformance resources and operation results) is parsed by those
models: an opinion on the server's output from outside the project, next to its own validator.
"""
from __future__ import annotations

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient

from tests.live_server import running

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture
def base(app) -> str:  # noqa: ANN001
    with running(app) as url:
        yield f"{url}/fhir"


def parsed(body: dict):  # noqa: ANN201
    """The body as fhirclient's model of its type, parsed strictly (raises FHIRValidationError)."""
    return FHIRElementFactory.instantiate(body["resourceType"], body)


def test_the_client_reads_the_capability_statement_and_works_the_crud_cycle(base):
    smart = smart_client.FHIRClient(settings={"app_id": "ipt-fhir-tests", "api_base": base})
    smart.prepare()
    statement = smart.server.capabilityStatement
    assert statement.fhirVersion == "4.0.1" and statement.rest[0].mode == "server"
    assert "Patient" in {r.type for r in statement.rest[0].resource}

    patient = Patient({"gender": "female", "birthDate": "1990-02-03"})
    patient.name = [HumanName({"family": "Smartclient", "given": ["Jane"]})]
    created = patient.create(smart.server)
    assert created["meta"]["versionId"] == "1"

    read = Patient.read(created["id"], smart.server)
    assert read.name[0].family == "Smartclient" and read.birthDate.isostring == "1990-02-03"
    read.gender = "other"
    updated = read.update(smart.server)
    assert updated["meta"]["versionId"] == "2"

    search = Patient.where(struct={"family": "smartclient", "gender": "other"})
    assert [p.id for p in search.perform_resources_iter(smart.server)] == [created["id"]]
    for given in ("Ann", "Bea"):
        Patient({"name": [{"family": "Smartclient", "given": [given]}]}).create(smart.server)
    # one match a page: the client follows the server's `next` links to the end
    paged = Patient.where(struct={"family": "smartclient", "_count": "1", "_sort": "_id"})
    pages = list(paged.perform_iter(smart.server))
    assert len(pages) == 3 and all(page.type == "searchset" and page.total == 3 for page in pages)
    assert len({p.id for p in paged.perform_resources_iter(smart.server)}) == 3

    read.delete(smart.server)
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(created["id"], smart.server)
    assert gone.value.response.status_code == 410


def test_every_kind_of_response_the_server_composes_parses_in_the_r4_models(base):
    http = requests.Session()
    http.headers.update(FHIR_JSON)

    def call(method: str, path: str, status: int, body: dict | None = None, **headers: str) -> dict:
        r = http.request(method, base + path, json=body, headers=headers)
        assert r.status_code == status, (method, path, r.status_code, r.text[:300])
        parsed(r.json())
        return r.json()

    tx = call("POST", "", 200, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:2b1f1f0e-5d6a-4c2b-9a8e-7f7c1c2d3e4f",
         "resource": {"resourceType": "Patient", "name": [{"family": "Models"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                      "subject": {"reference": "urn:uuid:2b1f1f0e-5d6a-4c2b-9a8e-7f7c1c2d3e4f"},
                      "effectiveDateTime": "2026-01-05", "valueInteger": 17},
         "request": {"method": "POST", "url": "Observation"}}]})
    assert tx["type"] == "transaction-response"
    patient_id = tx["entry"][0]["response"]["location"].split("/")[1]
    call("POST", "", 200, {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{patient_id}"}},
        {"request": {"method": "GET", "url": "Patient/does-not-exist"}}]})
    call("PUT", f"/Patient/{patient_id}", 200, {"resourceType": "Patient", "id": patient_id, "active": True})

    # the server's description of itself
    call("GET", "/metadata", 200)
    call("GET", "/metadata?mode=terminology", 200)
    # Bundles: searches with includes, counts and subsets, $everything, the three levels of history
    call("GET", "/Observation?_include=Observation:subject&_count=1", 200)
    call("GET", f"/Patient?_id={patient_id}&_revinclude=Observation:subject", 200)
    call("GET", "/Patient?_summary=count", 200)
    call("GET", "/Observation?_elements=status,code", 200)
    call("GET", f"/Patient/{patient_id}/$everything", 200)
    call("GET", f"/Patient/{patient_id}/_history", 200)
    call("GET", "/Patient/_history?_count=2", 200)
    call("GET", "/_history?_count=2", 200)
    # Parameters and OperationOutcomes of operations
    call("GET", f"/Patient/{patient_id}/$meta", 200)
    call("POST", "/Patient/$validate", 200, {"resourceType": "Patient", "gender": "female"})
    call("POST", "/Patient/$validate", 200, {"resourceType": "Patient", "gender": "nonsense"})
    # errors, each an OperationOutcome
    call("GET", "/Patient/does-not-exist", 404)
    call("GET", "/Patient?no-such-parameter=1", 400, Prefer="handling=strict")
    call("POST", "/Patient", 400, {"resourceType": "Patient", "gender": 1})
    call("PUT", f"/Patient/{patient_id}", 412, {"resourceType": "Patient", "id": patient_id}, **{"If-Match": 'W/"1"'})
    call("GET", "/metadata", 406, Accept="application/fhir+xml")
    call("DELETE", "/metadata", 405)
    call("DELETE", f"/Patient/{patient_id}", 200, Prefer="return=OperationOutcome")
    call("GET", f"/Patient/{patient_id}", 410)

    # the IPT layer: its conformance resources, a protocol applied, and a plan's progress
    for kind in ("StructureDefinition", "ValueSet", "CodeSystem", "PlanDefinition", "OperationDefinition"):
        listed = call("GET", f"/{kind}?_count=100", 200)
        assert listed["entry"], kind
        for entry in listed["entry"]:
            parsed(entry["resource"])
    call("PUT", "/Patient/p1", 201, {"resourceType": "Patient", "id": "p1"})
    call("PUT", "/Practitioner/t1", 201, {"resourceType": "Practitioner", "id": "t1"})
    applied = call("POST", "/PlanDefinition/ipt-standard-individual/$apply", 200, {
        "resourceType": "Parameters", "parameter": [
            {"name": "subject", "valueReference": {"reference": "Patient/p1"}},
            {"name": "practitioner", "valueReference": {"reference": "Practitioner/t1"}},
            {"name": "start", "valueDate": "2026-01-05"}, {"name": "store", "valueBoolean": True}]})
    plan = next(e["response"]["location"] for e in applied["entry"] if e["response"]["location"].startswith("CarePlan/"))
    call("GET", f"/{plan.split('/_history')[0]}/$ipt-progress", 200)
