"""Reference forms, chains (several levels) and _has (nested)."""
from __future__ import annotations

import pytest

from ipt_fhir.fhir.outcome import FHIRError

from .conftest import BASE


@pytest.fixture
def graph(engine):
    engine.put({"resourceType": "Organization", "id": "acme", "name": "Acme Clinic"})
    engine.put({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ng"}],
                "managingOrganization": {"reference": "Organization/acme"}})
    engine.put({"resourceType": "Patient", "id": "p2", "name": [{"family": "Smith"}]})
    engine.put({"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]})
    engine.put({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"coding": [
        {"system": "http://loinc.org", "code": "44261-6"}]}, "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Practitioner/dr"}]})
    engine.put({"resourceType": "Observation", "id": "o2", "status": "final", "code": {"coding": [
        {"system": "http://loinc.org", "code": "1234-5"}]}, "subject": {"reference": f"{BASE}/Patient/p2"}})
    engine.put({"resourceType": "Observation", "id": "o3", "status": "final", "code": {"text": "x"},
                "subject": {"identifier": {"system": "urn:mrn", "value": "X9"}}})
    engine.put({"resourceType": "Provenance", "id": "prov", "target": [{"reference": "Observation/o1"}],
                "recorded": "2025-01-01T00:00:00Z", "agent": [{"who": {"reference": "Practitioner/dr"}}]})
    return engine


@pytest.mark.parametrize("query,expected", [
    ("subject=Patient/p1", {"o1"}),
    ("subject=p1", {"o1"}),
    ("subject:Patient=p1", {"o1"}),
    ("patient=p2", {"o2"}),
    (f"subject={BASE}/Patient/p2", {"o2"}),
    ("subject=Patient/p1,Patient/p2", {"o1", "o2"}),
    ("subject:identifier=urn:mrn|X9", {"o3"}),
    ("subject:missing=true", set()),
    ("performer:missing=true", {"o2", "o3"}),
    ("subject:Patient.name=ng", {"o1"}),
    ("subject.name=smith", {"o2"}),
    ("subject:Patient.organization.name=acme", {"o1"}),
    ("subject:Patient.organization:Organization.name=acme", {"o1"}),
    ("performer:Practitioner.family=who", {"o1"}),
])
def test_reference_forms_and_chains(graph, query, expected):
    assert graph.ids("Observation", query) == expected


@pytest.mark.parametrize("query,expected", [
    ("_has:Observation:patient:code=44261-6", {"p1"}),
    ("_has:Observation:patient:code=1234-5", {"p2"}),
    ("_has:Observation:subject:status=final", {"p1", "p2"}),
    ("_has:Observation:patient:_has:Provenance:target:agent=Practitioner/dr", {"p1"}),
    ("_has:Observation:patient:performer:Practitioner.family=who", {"p1"}),
])
def test_has_reverse_chains(graph, query, expected):
    assert graph.ids("Patient", query) == expected


def test_bad_has_is_400(graph):
    with pytest.raises(FHIRError) as exc:
        graph.ids("Patient", "_has:Observation:code:status=final")
    assert exc.value.status == 400


def test_compartment_search_uses_the_patient_compartment(graph):
    b = graph.bundle("Observation", [], compartment=("Patient", "p1"))
    assert {e["resource"]["id"] for e in b["entry"]} == {"o1"}


def test_a_patient_linking_to_the_patient_is_in_its_compartment(graph):
    """CompartmentDefinition patient: Patient is in by `link` (and the patient by its own id)."""
    graph.put({"resourceType": "Patient", "id": "p3", "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}]})
    b = graph.bundle("Patient", [], compartment=("Patient", "p1"))
    assert {e["resource"]["id"] for e in b["entry"]} == {"p1", "p3"}
    b = graph.bundle("Patient", [], compartment=("Patient", "p2"))
    assert {e["resource"]["id"] for e in b["entry"]} == {"p2"}


def test_chains_and_has_follow_canonical_references_to_the_resource_with_that_url(engine):
    """A canonical-typed reference parameter is a reference parameter (search.html#chaining, #has): its
    chains find the resources whose url (and, for `url|version`, version) it names. They used to find
    nothing, silently."""
    engine.put({"resourceType": "Questionnaire", "id": "q1", "url": "http://ex.org/Questionnaire/q",
                "version": "1.0", "name": "QOne", "status": "active"})
    engine.put({"resourceType": "Questionnaire", "id": "q2", "url": "http://ex.org/Questionnaire/q",
                "version": "2.0", "name": "QTwo", "status": "draft"})
    engine.put({"resourceType": "QuestionnaireResponse", "id": "r1", "status": "completed",
                "questionnaire": "http://ex.org/Questionnaire/q|1.0"})
    engine.put({"resourceType": "QuestionnaireResponse", "id": "r2", "status": "in-progress",
                "questionnaire": "http://ex.org/Questionnaire/q"})
    engine.put({"resourceType": "QuestionnaireResponse", "id": "r3", "status": "completed",
                "questionnaire": "http://elsewhere.org/Questionnaire/q"})
    assert engine.ids("QuestionnaireResponse", "questionnaire.name=QOne") == {"r1", "r2"}
    assert engine.ids("QuestionnaireResponse", "questionnaire.name=QTwo") == {"r2"}  # r1 names version 1.0
    assert engine.ids("QuestionnaireResponse", "questionnaire:Questionnaire.status=draft") == {"r2"}
    assert engine.ids("Questionnaire", "_has:QuestionnaireResponse:questionnaire:status=completed") == {"q1"}
    assert engine.ids("Questionnaire", "_has:QuestionnaireResponse:questionnaire:status=in-progress") == {"q1", "q2"}
