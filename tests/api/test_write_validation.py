"""Writes the structural validator refuses: a 4xx OperationOutcome whose expression names the element,
for a create, an update and a transaction entry alike."""
from __future__ import annotations

import pytest

ORG = {"resourceType": "Organization", "id": "o", "name": "a"}
REFUSED = {
    "duplicate-contained-id": (
        {"resourceType": "Patient", "contained": [ORG, {**ORG, "name": "b"}],
         "managingOrganization": {"reference": "#o"}},
        "Patient.contained[1].id"),
    "doctype-in-narrative": (
        {"resourceType": "Patient", "text": {"status": "generated", "div": (
            '<!DOCTYPE div [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            '<div xmlns="http://www.w3.org/1999/xhtml">&x;</div>')}},
        "Patient.text.div"),
    "tab-in-code": ({"resourceType": "Patient", "language": "en\tUS"}, "Patient.language"),
    "contained-reference-of-a-wrong-type": (
        {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
         "contained": [{"resourceType": "Medication", "id": "x"}], "subject": {"reference": "#x"}},
        "Observation.subject.reference"),
    "own-server-reference-of-a-wrong-type": (
        {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
         "subject": {"reference": "http://testserver/fhir/Medication/1"}},
        "Observation.subject.reference"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_writes_name_the_element(client, case):
    resource, expression = REFUSED[case]
    created = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    updated = client.put(f"/fhir/{resource['resourceType']}/v1", json={**resource, "id": "v1"})
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}]}
    in_bundle = client.post("/fhir", json=bundle)
    for r, where in ((created, expression), (updated, expression),
                     (in_bundle, expression.replace(resource["resourceType"], "Bundle.entry[0].resource", 1))):
        assert 400 <= r.status_code < 500 and r.json()["resourceType"] == "OperationOutcome", r.text
        assert any(where in i.get("expression", []) for i in r.json()["issue"]), r.text
    assert client.get(f"/fhir/{resource['resourceType']}/v1").status_code == 404
