from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from ipt_fhir.domain.canonical import claimed_ipt_profile
from ipt_fhir.domain.demo_data import generate_courses, npi
from ipt_fhir.domain.lookup import InMemoryLookup, resources_from_transaction
from ipt_fhir.domain.progress import compute_progress
from ipt_fhir.domain.rules import check
from ipt_fhir.fhir.validation import validate_resource


@pytest.fixture(scope="module")
def bundles():
    return list(generate_courses(40, seed=7))


def stored(bundle):
    return resources_from_transaction(bundle)


def test_same_seed_same_bundles_and_prefix_stable(bundles):
    again = list(generate_courses(40, seed=7))
    assert json.dumps(again) == json.dumps(bundles)
    assert json.dumps(list(generate_courses(5, seed=7))) == json.dumps(bundles[:5])
    assert json.dumps(list(generate_courses(5, seed=8))) != json.dumps(bundles[:5])


def test_every_resource_is_valid_r4_and_passes_every_ipt_rule(bundles):
    for bundle in bundles:
        resources = stored(bundle)
        lookup = InMemoryLookup(resources)
        for r in resources:
            assert [i for i in validate_resource(r) if i.is_error] == [], (r["resourceType"], validate_resource(r))
            assert check(r, None, lookup) == [], (r["resourceType"], check(r, None, lookup))


def test_each_bundle_is_one_patients_course(bundles):
    for bundle in bundles:
        assert bundle["type"] == "transaction"
        kinds = Counter(e["resource"]["resourceType"] for e in bundle["entry"])
        assert kinds["Patient"] == kinds["Practitioner"] == kinds["CarePlan"] == kinds["ServiceRequest"] == 1
        assert 2 <= kinds["Condition"] <= 3 and 2 <= kinds["Goal"] <= 4 and kinds["Encounter"] >= 6
        patient = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        for e in bundle["entry"]:
            if "subject" in e["resource"]:
                assert e["resource"]["subject"]["reference"] == patient
        practitioner = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Practitioner")
        assert practitioner["request"]["ifNoneExist"].startswith("identifier=http://hl7.org/fhir/sid/us-npi|")


def test_ipt_resources_claim_their_profiles(bundles):
    claimed = Counter(claimed_ipt_profile(e["resource"]) for b in bundles for e in b["entry"])
    for profile in ("ipt-careplan", "ipt-course-servicerequest", "ipt-session-encounter", "ipt-goal",
                    "ipt-symptom-score", "ipt-problem-area-condition"):
        assert claimed[profile] >= 40 if profile in ("ipt-careplan", "ipt-course-servicerequest") else claimed[profile] > 0


def test_courses_vary_realistically(bundles):
    statuses, protocols, responders, attendance = Counter(), Counter(), Counter(), Counter()
    for bundle in bundles:
        resources = stored(bundle)
        plan = next(r for r in resources if r["resourceType"] == "CarePlan")
        statuses[plan["status"]] += 1
        protocols[plan["instantiatesCanonical"][0].rsplit("/", 1)[1]] += 1
        progress = compute_progress(plan,
                                    course_requests=[r for r in resources if r["resourceType"] == "ServiceRequest"],
                                    sessions=[r for r in resources if r["resourceType"] == "Encounter"],
                                    scores=[r for r in resources if r["resourceType"] == "Observation"])
        if progress.phq9_response is not None:
            responders[progress.phq9_response] += 1
        for r in resources:
            if r["resourceType"] == "Encounter":
                attendance[r["status"]] += 1
    assert {"active", "completed"} <= set(statuses)
    assert len(protocols) >= 4
    assert responders[True] > 0 and responders[False] > 0
    assert attendance["finished"] > attendance["cancelled"] > 0 and attendance["planned"] > 0


def test_narrative_matches_the_stored_course(bundles):
    for bundle in itertools.islice(bundles, 10):
        resources = stored(bundle)
        plan = next(r for r in resources if r["resourceType"] == "CarePlan")
        held = sum(1 for r in resources if r["resourceType"] == "Encounter" and r["status"] == "finished")
        assert f"{held} attended of" in plan["text"]["div"]


def test_npis_have_valid_check_digits():
    assert npi(123456789) == "1234567893"   # the CMS worked example


def test_other_canonical_base(bundles):
    text = json.dumps(next(generate_courses(1, seed=7, canonical_base="https://fhir.clinic.example")))
    assert "ipt-fhir.org" not in text and "https://fhir.clinic.example/StructureDefinition/ipt-careplan" in text
