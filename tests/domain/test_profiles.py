"""Demo data and $apply output against the IPT profiles with the strict validator; breakages fail."""
from __future__ import annotations

import copy
from datetime import date

import pytest

from ipt_fhir.domain.apply import apply_protocol
from ipt_fhir.domain.canonical import DEFAULT_CANONICAL_BASE, claimed_ipt_profile
from ipt_fhir.domain.conformance_loader import load_conformance
from ipt_fhir.domain.demo_data import generate_courses
from ipt_fhir.domain.lookup import resources_from_transaction
from ipt_fhir.domain.protocols import PROTOCOL_IDS

from .world import counter_ids

validation = pytest.importorskip("ipt_fhir.fhir.validation")


@pytest.fixture(scope="module", autouse=True)
def registered():
    try:
        for r in load_conformance(DEFAULT_CANONICAL_BASE):
            if r["resourceType"] == "CodeSystem":
                validation.register_code_system(r)
            elif r["resourceType"] == "ValueSet":
                validation.register_value_set(r)
            elif r["resourceType"] == "StructureDefinition":
                validation.register_profile(r)
    except NotImplementedError:
        pytest.skip("profile validation is not implemented yet")


def problems(resource):
    return [i for i in validation.validate_resource(resource) + validation.validate_profiles(resource) if i.is_error]


def demo_resources():
    return [r for b in generate_courses(12, seed=11) for r in resources_from_transaction(b)]


def test_demo_data_passes_base_and_ipt_profiles():
    for r in demo_resources():
        assert problems(r) == [], r["resourceType"]


@pytest.mark.parametrize("protocol_id", PROTOCOL_IDS)
def test_apply_output_passes_the_ipt_profiles(protocol_id):
    bundle = apply_protocol(protocol_id, "Patient/p1", "Practitioner/t1", date(2025, 1, 6), new_id=counter_ids())
    for r in resources_from_transaction(bundle):
        assert problems(r) == [], r["resourceType"]


def first(rtype):
    """The first demo resource of `rtype` that claims an IPT profile."""
    return copy.deepcopy(next(r for r in demo_resources() if r["resourceType"] == rtype and claimed_ipt_profile(r)))


def drop_category(plan, code):
    plan["category"] = [c for c in plan["category"] if c["coding"][0]["code"] != code]
    return plan


BREAKAGES = {
    "careplan without the SNOMED category": ("CarePlan", lambda r: drop_category(r, "718347000")),
    "careplan without the assess-plan category": ("CarePlan", lambda r: drop_category(r, "assess-plan")),
    "careplan with intent order": ("CarePlan", lambda r: r.update(intent="order")),
    "careplan without period": ("CarePlan", lambda r: r.pop("period")),
    "careplan without narrative": ("CarePlan", lambda r: r.pop("text")),
    "careplan about a group": ("CarePlan", lambda r: r.update(subject={"reference": "Group/g"})),
    "session without a session number": ("Encounter", lambda r: r.update(
        extension=[e for e in r["extension"] if not e["url"].endswith("/ipt-session-number")])),
    "session with an unknown phase": ("Encounter", lambda r: [e["valueCoding"].update(code="opening")
                                                              for e in r["extension"] if e["url"].endswith("/ipt-phase")]),
    "session without basedOn": ("Encounter", lambda r: r.pop("basedOn")),
    "session without type": ("Encounter", lambda r: r.pop("type")),
    "course with another code": ("ServiceRequest", lambda r: r.update(code={"coding": [{"system": "http://snomed.info/sct", "code": "75516001"}]})),
    "course timed by a dateTime": ("ServiceRequest", lambda r: (r.pop("occurrenceTiming"), r.update(occurrenceDateTime="2025-01-06"))),
    "course without quantity": ("ServiceRequest", lambda r: r.pop("quantityQuantity")),
    "score with another LOINC code": ("Observation", lambda r: r.update(code={"coding": [{"system": "http://loinc.org", "code": "8302-2"}]})),
    "score without survey category": ("Observation", lambda r: r.update(category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}])),
    "problem area with an unknown code": ("Condition", lambda r: r["code"]["coding"][0].update(code="loneliness")),
    "problem area without health-concern": ("Condition", lambda r: r.update(category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}])),
    "goal about a group": ("Goal", lambda r: r.update(subject={"reference": "Group/g"})),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_targeted_breakage_fails_the_profile(name):
    rtype, breaker = BREAKAGES[name]
    resource = first(rtype)
    assert problems(resource) == []
    breaker(resource)
    assert problems(resource), name
