from __future__ import annotations

import json

import pytest

from ipt_fhir.domain.canonical import DEFAULT_CANONICAL_BASE
from ipt_fhir.domain.conformance_loader import conformance_by_type, ipt_profile_urls, load_conformance
from ipt_fhir.fhir.validation import validate_resource


def test_every_resource_has_a_canonical_url_under_the_default_base():
    resources = load_conformance()
    assert len(resources) >= 30
    for r in resources:
        assert r["url"] == f"{DEFAULT_CANONICAL_BASE}/{r['resourceType']}/{r['id']}"
        assert r["status"] == "active" and r.get("version")


def test_the_configured_base_replaces_the_default_everywhere():
    resources = load_conformance("https://fhir.clinic.example/r4/")
    text = json.dumps(resources)
    assert DEFAULT_CANONICAL_BASE not in text
    assert "https://fhir.clinic.example/r4/StructureDefinition/ipt-careplan" in text
    assert "https://fhir.clinic.example/r4/CodeSystem/ipt-problem-area" in text


def test_callers_get_their_own_copies():
    load_conformance()[0]["id"] = "changed"
    assert load_conformance()[0]["id"] != "changed"


def test_code_systems_cover_the_domain():
    cs = {r["id"]: {c["code"] for c in r["concept"]} for r in conformance_by_type()["CodeSystem"]}
    assert cs["ipt-problem-area"] == {"grief", "role-dispute", "role-transition", "interpersonal-deficits",
                                      "adjustment-difficulties"}
    assert cs["ipt-phase"] == {"initial", "middle", "termination", "maintenance"}
    assert {"individual", "group", "family", "metacognitive", "dynamic-interpersonal"} <= cs["ipt-format"]
    assert {"clarification", "communication-analysis", "role-play"} <= cs["ipt-technique"]
    assert len(cs["ipt-mechanism"]) == 4


def test_profiles_name_the_six_ipt_shapes_on_core_r4():
    assert set(ipt_profile_urls()) == {"CarePlan", "Goal", "Encounter", "ServiceRequest", "Observation", "Condition"}
    for sd in conformance_by_type()["StructureDefinition"]:
        assert sd["baseDefinition"].startswith("http://hl7.org/fhir/StructureDefinition/")
        assert sd["derivation"] == "constraint" and sd["fhirVersion"] == "4.0.1"
        for el in sd["differential"]["element"]:
            assert el["path"].split(".")[0] == sd["type"]
            assert el["id"].split(".")[0].split(":")[0] == sd["type"]


def test_every_canonical_a_profile_names_is_published():
    resources = load_conformance()
    urls = {r["url"] for r in resources}
    for sd in (r for r in resources if r["resourceType"] == "StructureDefinition"):
        for el in sd["differential"]["element"]:
            vs = (el.get("binding") or {}).get("valueSet")
            if vs and "ipt-fhir" in vs:
                assert vs in urls
            for t in el.get("type", []):
                for p in t.get("profile", []):
                    assert p in urls


def test_careplan_profile_slices_category_by_both_codes():
    sd = next(r for r in load_conformance() if r["id"] == "ipt-careplan")
    slices = {e["sliceName"]: e["patternCodeableConcept"]["coding"][0]["code"]
              for e in sd["differential"]["element"] if e.get("sliceName")
              and e["path"] == "CarePlan.category"}
    assert slices == {"AssessPlan": "assess-plan", "MentalHealthCarePlan": "718347000"}


@pytest.mark.parametrize("resource", load_conformance(), ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_each_conformance_resource_is_valid_r4(resource):
    assert [i for i in validate_resource(resource) if i.is_error] == []


def test_every_extension_a_profile_uses_is_allowed_there_by_its_context():
    """A profile that puts one of our extensions on an element its context does not list is one the HL7
    validator rejects (ipt-phase on the course ServiceRequest, whose context lacked ServiceRequest)."""
    definitions = {r["url"]: r for r in conformance_by_type()["StructureDefinition"]}
    used = []
    for profile in definitions.values():
        if profile["type"] == "Extension":
            continue
        for element in profile.get("differential", {}).get("element", []):
            for t in element.get("type", []):
                for url in t.get("profile", []) if t.get("code") == "Extension" else []:
                    if url in definitions:
                        owner = element["path"].rsplit(".", 1)[0]  # the element the extension sits on
                        contexts = [c["expression"] for c in definitions[url].get("context", [])]
                        used.append((profile["id"], owner, url.rsplit("/", 1)[-1]))
                        assert owner in contexts, \
                            f"{profile['id']} uses {url} on {owner}; its context is {contexts}"
    assert ("ipt-course-servicerequest", "ServiceRequest", "ipt-phase") in used


def test_every_protocols_course_action_is_coded_as_the_course_profile_requires():
    """An integrator building the course ServiceRequest from a protocol's action.code (as a PlanDefinition
    is read) must get one the course profile accepts: its pattern coding (SNOMED 443730003) is among the
    action's codes, beside the protocol's own (group psychotherapy, psychodynamic psychotherapy)."""
    by_type = conformance_by_type()
    course = next(r for r in by_type["StructureDefinition"] if r["id"] == "ipt-course-servicerequest")
    pattern = next(e["patternCodeableConcept"] for e in course["differential"]["element"]
                   if e["path"] == "ServiceRequest.code")
    for plan in by_type["PlanDefinition"]:
        codings = [c for code in plan["action"][0]["code"] for c in code["coding"]]
        for wanted in pattern["coding"]:
            assert {"system": wanted["system"], "code": wanted["code"]} in [
                {"system": c["system"], "code": c["code"]} for c in codings], plan["id"]
