"""A table of invalid inputs: each must be rejected with the right issue code and FHIRPath expression.

`stage` says which function must report it: "base" -> validate_resource (a 400 at the REST layer),
"profile" -> validate_profiles (a 422); the other function must report no error for the same input.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest

from ipt_fhir.fhir.jsonio import parse_json
from ipt_fhir.fhir.validation import (
    known_resource_types,
    register_code_system,
    register_profile,
    register_value_set,
    validate_profiles,
    validate_resource,
)

PATIENT = {
    "resourceType": "Patient", "id": "p1", "active": True, "gender": "female", "birthDate": "1980-01-02",
    "name": [{"family": "Doe", "given": ["Jane"]}],
}
OBSERVATION = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "44249-1"}]},
    "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-01-02T10:00:00Z",
    "valueQuantity": {"value": 5, "unit": "score", "system": "http://unitsofmeasure.org", "code": "{score}"},
}
CAREPLAN = {
    "resourceType": "CarePlan", "id": "c1", "status": "active", "intent": "plan",
    "subject": {"reference": "Patient/p1"},
    "activity": [{"detail": {"status": "scheduled", "code": {"text": "IPT session"}}}],
}
DIV = '<div xmlns="http://www.w3.org/1999/xhtml">{}</div>'


def with_(base: dict, **changes: Any) -> dict:
    r = copy.deepcopy(base)
    for k, v in changes.items():
        if v is DROP:
            r.pop(k, None)
        else:
            r[k] = v
    return r


DROP = object()
P, O, C = PATIENT, OBSERVATION, CAREPLAN

CASES: list[tuple[str, dict, str, str]] = []  # (id, resource, code, expression) for the base stage


def case(name: str, resource: dict, code: str, expression: str) -> None:
    CASES.append((name, resource, code, expression))


# --- primitives: boolean ------------------------------------------------------------------------------
for i, bad in enumerate(["true", 0, 1, "yes", 1.0]):
    case(f"boolean-{i}", with_(P, active=bad), "value", "Patient.active")
for i, bad in enumerate([None, [True], {"value": True}]):
    case(f"boolean-shape-{i}", with_(P, active=bad), "structure", "Patient.active")
# integer / positiveInt / unsignedInt
for i, bad in enumerate(["42", True, 1.5, 2**31, -(2**31) - 1, parse_json("2.0")]):
    case(f"integer-{i}", with_(P, multipleBirthInteger=bad), "value", "Patient.multipleBirth.ofType(integer)")
for i, bad in enumerate([0, -1, "1", 2**31]):
    case(f"positiveInt-{i}", with_(C, activity=[{"detail": {"status": "scheduled", "scheduledTiming": {
        "repeat": {"frequency": bad}}}}]), "value", "CarePlan.activity[0].detail.scheduled.ofType(Timing).repeat.frequency")
for i, bad in enumerate([-1, "5", 2.5]):
    case(f"unsignedInt-{i}", with_(P, photo=[{"contentType": "image/png", "size": bad}]), "value", "Patient.photo[0].size")
# decimal
for i, bad in enumerate(["1.5", True, "NaN"]):
    case(f"decimal-{i}", with_(O, valueQuantity={"value": bad}), "value", "Observation.value.ofType(Quantity).value")
# string / markdown
case("string-empty", with_(P, name=[{"family": ""}]), "value", "Patient.name[0].family")
case("string-too-long", with_(P, name=[{"family": "x" * (1024 * 1024 + 1)}]), "value", "Patient.name[0].family")
case("string-number", with_(P, name=[{"family": 42}]), "value", "Patient.name[0].family")
case("string-vertical-tab", with_(P, name=[{"family": "a\x0bb"}]), "value", "Patient.name[0].family")
case("markdown-empty", with_(C, note=[{"text": ""}]), "value", "CarePlan.note[0].text")
case("given-number", with_(P, name=[{"given": ["Ann", 7]}]), "value", "Patient.name[0].given[1]")
# code
for i, bad in enumerate([" female", "fe  male", "", "female "]):
    case(f"code-shape-{i}", with_(P, gender=bad), "value", "Patient.gender")
# id
for i, bad in enumerate(["a b", "x" * 65, "", "a_b", 12]):
    case(f"id-{i}", with_(P, id=bad), "value", "Patient.id")
# uri / url / canonical / oid / uuid
case("uri-space", with_(P, identifier=[{"system": "http://a b", "value": "1"}]), "value", "Patient.identifier[0].system")
case("uri-empty", with_(P, identifier=[{"system": "", "value": "1"}]), "value", "Patient.identifier[0].system")
case("url-space", with_(P, photo=[{"url": "http://x/a b"}]), "value", "Patient.photo[0].url")
case("canonical-space", with_(P, meta={"profile": ["http://x/a b"]}), "value", "Patient.meta.profile[0]")
case("canonical-number", with_(P, meta={"profile": [5]}), "value", "Patient.meta.profile[0]")
case("oid-bad", with_(P, extension=[{"url": "http://x/e", "valueOid": "urn:oid:1.2.x"}]), "value",
     "Patient.extension[0].value.ofType(oid)")
case("uuid-bad", with_(P, extension=[{"url": "http://x/e", "valueUuid": "urn:uuid:NOT-A-UUID"}]), "value",
     "Patient.extension[0].value.ofType(uuid)")
case("oid-valueOid", with_(P, extension=[{"url": "http://x/e", "valueOid": "1.2.3"}]), "value",
     "Patient.extension[0].value.ofType(oid)")
# base64Binary
for i, bad in enumerate(["not base64!", "abc", 1234]):
    case(f"base64-{i}", with_(P, photo=[{"contentType": "image/png", "data": bad}]), "value", "Patient.photo[0].data")
# date / dateTime / instant / time
for i, bad in enumerate(["1980-13-01", "1980-02-30", "80-01-01", "1980-01-02T10:00:00Z", 19800102, "1980/01/02",
                         "0000-01-01", "1980-1-2"]):
    case(f"date-{i}", with_(P, birthDate=bad), "value", "Patient.birthDate")
for i, bad in enumerate(["2020-01-01T10:00:00", "2020-01-01T25:00:00Z", "2020-01-01T10:00Z", "2020-01-01 10:00:00Z",
                         "2021-02-29", "2020-01-01T10:00:00+15:00"]):
    case(f"dateTime-{i}", with_(P, deceasedDateTime=bad), "value", "Patient.deceased.ofType(dateTime)")
for i, bad in enumerate(["2020-01-01", "2020-01-01T10:00:00", "2020-01-01T10:00Z", 1577872800]):
    case(f"instant-{i}", with_(O, issued=bad), "value", "Observation.issued")
for i, bad in enumerate(["25:00:00", "10:00", "10:00:00Z"]):
    case(f"time-{i}", with_(O, valueTime=bad, valueQuantity=DROP), "value", "Observation.value.ofType(time)")
# xhtml
for i, div in enumerate([
    '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script>x</div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">x</p></div>',
    '<div>no namespace</div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>',
    '<div xmlns="http://www.w3.org/1999/xhtml">   </div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="http://evil"/>x</div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><form>x</form></div>',
    '<p xmlns="http://www.w3.org/1999/xhtml">not a div</p>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:alert(1)">x</a></div>',
    '<div xmlns="http://www.w3.org/1999/xhtml"><link href="http://x/style.css"/>x</div>',
]):
    case(f"xhtml-{i}", with_(P, text={"status": "generated", "div": div}), "value", "Patient.text.div")

# --- JSON shape ---------------------------------------------------------------------------------------
case("unknown-element", with_(P, foo=1), "structure", "Patient.foo")
case("fhir-comments", with_(P, fhir_comments=["x"]), "structure", "Patient.fhir_comments")
case("unknown-nested", with_(P, name=[{"family": "Doe", "surname": "x"}]), "structure", "Patient.name[0].surname")
case("unknown-underscore", with_(P, _foo={"extension": []}), "structure", "Patient._foo")
case("unknown-name-no-identifier", with_(P, **{"a b": 1}), "structure", "Patient.`a b`")
case("unknown-name-empty", with_(P, **{"": 1}), "structure", "Patient")
case("empty-object", with_(P, name=[{}]), "structure", "Patient.name[0]")
case("empty-array", with_(P, name=[]), "structure", "Patient.name")
case("empty-primitive-array", with_(P, name=[{"given": []}]), "structure", "Patient.name[0].given")
case("object-for-array", with_(P, name={"family": "Doe"}), "structure", "Patient.name")
case("array-for-object", with_(O, code=[{"text": "x"}]), "structure", "Observation.code")
case("string-for-object", with_(O, code="x"), "structure", "Observation.code")
case("array-for-primitive", with_(P, birthDate=["1980-01-02"]), "structure", "Patient.birthDate")
case("primitive-for-array", with_(P, name=[{"given": "Jane"}]), "structure", "Patient.name[0].given")
case("null-element", with_(P, gender=None), "structure", "Patient.gender")
case("null-object", with_(O, code=None), "structure", "Observation.code")
case("null-in-array-no-ext", with_(P, name=[{"given": [None, "J"]}]), "structure", "Patient.name[0].given[0]")
case("null-in-object-array", with_(P, name=[None]), "structure", "Patient.name[0]")
case("misaligned-primitive-ext", with_(P, name=[{"given": ["A", "B"], "_given": [None]}]), "structure",
     "Patient.name[0].given")
case("both-null", with_(P, name=[{"given": ["A", None], "_given": [None, None]}]), "structure",
     "Patient.name[0].given[1]")
case("primitive-ext-string", with_(P, _birthDate="x"), "structure", "Patient.birthDate")
case("primitive-ext-empty", with_(P, _birthDate={}), "structure", "Patient.birthDate")
case("primitive-ext-no-url", with_(P, _birthDate={"extension": [{"valueString": "x"}]}), "required",
     "Patient.birthDate.extension[0].url")
case("primitive-ext-unknown", with_(P, _birthDate={"foo": 1}), "structure", "Patient.birthDate.foo")
case("primitive-ext-only-id", with_(P, birthDate=DROP, _birthDate={"id": "x"}), "invariant", "Patient.birthDate")
case("primitive-ext-on-complex", with_(P, _name=[{"id": "x"}]), "structure", "Patient._name")
case("lone-ext-array-null", with_(P, name=[{"_given": [None]}]), "structure", "Patient.name[0].given[0]")
case("resource-type-unknown", with_(P, resourceType="Patientt"), "structure", "Patientt")
case("resource-type-number", with_(P, resourceType=5), "structure", "5")
case("resource-type-abstract", with_(P, resourceType="DomainResource"), "structure", "DomainResource")
case("choice-two-types", with_(P, deceasedBoolean=True, deceasedDateTime="2020-01-01"), "structure", "Patient.deceased")
case("choice-unknown-type", with_(P, deceasedString="yes"), "structure", "Patient.deceasedString")
case("choice-wrong-json", with_(O, valueQuantity="5 mg"), "structure", "Observation.value.ofType(Quantity)")
case("choice-bare-name", with_(O, value=5, valueQuantity=DROP), "structure", "Observation.value")
case("ele-1-only-id", with_(P, name=[{"id": "n1"}]), "invariant", "Patient.name[0]")
case("contained-not-object", with_(P, contained=["x"]), "structure", "Patient.contained[0]")
case("contained-unknown-type", with_(P, contained=[{"resourceType": "Nope", "id": "x"}]), "structure",
     "Patient.contained[0]")
case("contained-bad-inner", with_(P, contained=[{"resourceType": "Practitioner", "id": "pr", "active": "yes"}],
                                  generalPractitioner=[{"reference": "#pr"}]), "value", "Patient.contained[0].active")
case("bundle-entry-bad-resource", {"resourceType": "Bundle", "type": "collection", "entry": [
    {"fullUrl": "urn:uuid:6d5f8a5e-6c1b-4e0f-9c1e-0a0b0c0d0e0f", "resource": with_(P, gender="x")}]},
     "code-invalid", "Bundle.entry[0].resource.gender")
case("extension-no-url", with_(P, extension=[{"valueString": "x"}]), "required", "Patient.extension[0].url")
case("extension-both", with_(P, extension=[{"url": "http://x/e", "valueString": "x",
                                            "extension": [{"url": "a", "valueString": "y"}]}]),
     "invariant", "Patient.extension[0]")
case("extension-neither", with_(P, extension=[{"url": "http://x/e"}]), "invariant", "Patient.extension[0]")
case("modifier-extension-bad", with_(P, modifierExtension=[{"url": "http://x/e", "valueBoolean": "true"}]),
     "value", "Patient.modifierExtension[0].value.ofType(boolean)")

# --- cardinality ---------------------------------------------------------------------------------------
case("obs-missing-status", with_(O, status=DROP), "required", "Observation.status")
case("obs-missing-code", with_(O, code=DROP), "required", "Observation.code")
case("careplan-missing-intent", with_(C, intent=DROP), "required", "CarePlan.intent")
case("careplan-missing-subject", with_(C, subject=DROP), "required", "CarePlan.subject")
case("careplan-detail-missing-status", with_(C, activity=[{"detail": {"code": {"text": "x"}}}]), "required",
     "CarePlan.activity[0].detail.status")
case("patient-link-missing-other", with_(P, link=[{"type": "seealso"}]), "required", "Patient.link[0].other")
case("patient-link-missing-type", with_(P, link=[{"other": {"reference": "Patient/x"}}]), "required", "Patient.link[0].type")
case("extension-url-required-nested", with_(P, extension=[{"url": "http://x/e", "extension": [{"valueString": "y"}]}]),
     "required", "Patient.extension[0].extension[0].url")
case("bundle-missing-type", {"resourceType": "Bundle"}, "required", "Bundle.type")
case("encounter-missing-class", {"resourceType": "Encounter", "status": "finished"}, "required", "Encounter.class")
case("goal-missing-description", {"resourceType": "Goal", "lifecycleStatus": "active",
                                  "subject": {"reference": "Patient/p1"}}, "required", "Goal.description")
case("condition-missing-subject", {"resourceType": "Condition"}, "required", "Condition.subject")
case("narrative-missing-status", with_(P, text={"div": DIV.format("x")}), "required", "Patient.text.status")
case("coding-max-1", with_(O, code={"coding": [{"code": "a"}], "text": ["x", "y"]}), "structure", "Observation.code.text")
case("attachment-max-1", with_(P, photo=[{"contentType": ["image/png"]}]), "structure", "Patient.photo[0].contentType")

# --- required bindings --------------------------------------------------------------------------------
case("gender-bogus", with_(P, gender="bogus"), "code-invalid", "Patient.gender")
case("gender-case", with_(P, gender="Female"), "code-invalid", "Patient.gender")
case("obs-status-bogus", with_(O, status="done"), "code-invalid", "Observation.status")
case("careplan-status-bogus", with_(C, status="ongoing"), "code-invalid", "CarePlan.status")
case("careplan-intent-bogus", with_(C, intent="wish"), "code-invalid", "CarePlan.intent")
case("careplan-detail-status-bogus", with_(C, activity=[{"detail": {"status": "x", "code": {"text": "y"}}},
                                                        {"detail": {"status": "later"}}]),
     "code-invalid", "CarePlan.activity[1].detail.status")
case("name-use-bogus", with_(P, name=[{"use": "nick", "family": "D"}]), "code-invalid", "Patient.name[0].use")
case("identifier-use-bogus", with_(P, identifier=[{"use": "main", "value": "1"}]), "code-invalid", "Patient.identifier[0].use")
case("telecom-system-bogus", with_(P, telecom=[{"system": "pager2", "value": "1"}]), "code-invalid", "Patient.telecom[0].system")
case("address-use-bogus", with_(P, address=[{"use": "holiday", "city": "X"}]), "code-invalid", "Patient.address[0].use")
case("narrative-status-bogus", with_(P, text={"status": "auto", "div": DIV.format("x")}), "code-invalid", "Patient.text.status")
case("quantity-comparator-bogus", with_(O, valueQuantity={"value": 1, "comparator": "~"}), "code-invalid",
     "Observation.value.ofType(Quantity).comparator")
case("link-type-bogus", with_(P, link=[{"type": "twin", "other": {"reference": "Patient/x"}}]), "code-invalid", "Patient.link[0].type")
case("encounter-status-bogus", {"resourceType": "Encounter", "status": "done", "class": {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}}, "code-invalid", "Encounter.status")
case("condition-clinical-status-bogus", {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "gone"}]}},
     "code-invalid", "Condition.clinicalStatus")
case("condition-clinical-status-wrong-system", {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
    "clinicalStatus": {"coding": [{"system": "http://snomed.info/sct", "code": "active"}]}}, "code-invalid",
     "Condition.clinicalStatus")
case("condition-clinical-status-text-only", {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
    "clinicalStatus": {"text": "active"}}, "code-invalid", "Condition.clinicalStatus")
case("bundle-type-bogus", {"resourceType": "Bundle", "type": "box"}, "code-invalid", "Bundle.type")
case("goal-lifecycle-bogus", {"resourceType": "Goal", "lifecycleStatus": "dreaming", "description": {"text": "x"},
                              "subject": {"reference": "Patient/p1"}}, "code-invalid", "Goal.lifecycleStatus")
case("contact-point-use-bogus", with_(P, telecom=[{"system": "phone", "value": "1", "use": "cell"}]), "code-invalid",
     "Patient.telecom[0].use")
case("meta-security-fine", with_(P, gender="unknown", birthDate="1980"), None, None)  # sanity: valid partial date

# --- invariants ----------------------------------------------------------------------------------------
case("per-1", with_(O, effectiveDateTime=DROP, effectivePeriod={"start": "2024-02-01", "end": "2024-01-01"}),
     "invariant", "Observation.effective.ofType(Period)")
case("per-1-timezones", with_(O, effectiveDateTime=DROP, effectivePeriod={
    "start": "2024-01-01T10:00:00+00:00", "end": "2024-01-01T11:00:00+02:00"}), "invariant",
     "Observation.effective.ofType(Period)")
case("per-1-nested", with_(P, name=[{"family": "D", "period": {"start": "2020", "end": "2019"}}]), "invariant",
     "Patient.name[0].period")
case("ref-1", with_(P, generalPractitioner=[{"reference": "#nope"}]), "invariant", "Patient.generalPractitioner[0]")
case("dom-2", with_(P, contained=[{"resourceType": "Practitioner", "id": "pr", "contained": [
    {"resourceType": "Practitioner", "id": "pr2"}]}], generalPractitioner=[{"reference": "#pr"}]), "invariant", "Patient")
case("dom-3", with_(P, contained=[{"resourceType": "Practitioner", "id": "pr"}]), "invariant", "Patient")
case("dom-4", with_(P, contained=[{"resourceType": "Practitioner", "id": "pr", "meta": {"versionId": "1"}}],
                    generalPractitioner=[{"reference": "#pr"}]), "invariant", "Patient")
case("dom-4-lastUpdated", with_(P, contained=[{"resourceType": "Practitioner", "id": "pr", "meta": {
    "lastUpdated": "2020-01-01T00:00:00Z"}}], generalPractitioner=[{"reference": "#pr"}]), "invariant", "Patient")
case("dom-5", with_(P, contained=[{"resourceType": "Practitioner", "id": "pr", "meta": {"security": [{"code": "R"}]}}],
                    generalPractitioner=[{"reference": "#pr"}]), "invariant", "Patient")
case("cpl-3", with_(C, activity=[{"reference": {"reference": "ServiceRequest/1"},
                                  "detail": {"status": "scheduled"}}]), "invariant", "CarePlan.activity[0]")
case("obs-6", with_(O, dataAbsentReason={"text": "x"}), "invariant", "Observation")
case("obs-7", with_(O, component=[{"code": copy.deepcopy(O["code"]), "valueString": "x"}]), "invariant", "Observation")
case("qty-3", with_(O, valueQuantity={"value": 1, "code": "mg"}), "invariant", "Observation.value.ofType(Quantity)")
case("rng-2", with_(O, valueQuantity=DROP, valueRange={"low": {"value": 5}, "high": {"value": 1}}), "invariant",
     "Observation.value.ofType(Range)")
case("cpt-2", with_(P, telecom=[{"value": "555"}]), "invariant", "Patient.telecom[0]")
case("att-1", with_(P, photo=[{"data": "aGVsbG8="}]), "invariant", "Patient.photo[0]")
case("pat-1", with_(P, contact=[{"gender": "male"}]), "invariant", "Patient.contact[0]")
case("con-3-abatement", {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
    "abatementDateTime": "2020-01-01"}, "invariant", "Condition")
case("con-5", {"resourceType": "Condition", "subject": {"reference": "Patient/p1"},
    "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
    "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                       "code": "entered-in-error"}]}}, "invariant", "Condition")
case("bdl-1", {"resourceType": "Bundle", "type": "collection", "total": 1}, "invariant", "Bundle")
case("bdl-7", {"resourceType": "Bundle", "type": "collection", "entry": [
    {"fullUrl": "urn:uuid:6d5f8a5e-6c1b-4e0f-9c1e-0a0b0c0d0e0f", "resource": {"resourceType": "Patient"}},
    {"fullUrl": "urn:uuid:6d5f8a5e-6c1b-4e0f-9c1e-0a0b0c0d0e0f", "resource": {"resourceType": "Patient"}}]},
     "invariant", "Bundle")
case("bdl-3", {"resourceType": "Bundle", "type": "collection", "entry": [{"request": {"method": "GET", "url": "Patient"}}]},
     "invariant", "Bundle")
case("tim-2", with_(C, activity=[{"detail": {"status": "scheduled", "scheduledTiming": {"repeat": {"period": 1}}}}]),
     "invariant", "CarePlan.activity[0].detail.scheduled.ofType(Timing).repeat")
case("tim-6", with_(C, activity=[{"detail": {"status": "scheduled", "scheduledTiming": {"repeat": {"periodMax": 2}}}}]),
     "invariant", "CarePlan.activity[0].detail.scheduled.ofType(Timing).repeat")
case("org-1", {"resourceType": "Organization", "active": True}, "invariant", "Organization")
case("goal-gol-1", {"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "x"},
                    "subject": {"reference": "Patient/p1"}, "target": [{"detailString": "x"}]},
     "invariant", "Goal.target[0]")
case("ext-1-primitive", with_(P, _birthDate={"extension": [{"url": "http://x/e", "valueString": "a",
                                                            "extension": [{"url": "b", "valueString": "c"}]}]}),
     "invariant", "Patient.birthDate.extension[0]")
case("sqty-1", with_(O, valueQuantity=DROP, valueRange={"low": {"value": 1, "comparator": "<"}}), "invariant",
     "Observation.value.ofType(Range).low")
case("txt-2-ele", with_(P, text={"status": "generated", "div": DIV.format("<p></p>")}), "value", "Patient.text.div")

case("org-2-home-address", {"resourceType": "Organization", "name": "X", "address": [{"use": "home", "city": "Y"}]},
     "invariant", "Organization.address[0]")
case("org-3-home-telecom", {"resourceType": "Organization", "name": "X", "telecom": [
    {"system": "phone", "value": "1", "use": "home"}]}, "invariant", "Organization.telecom[0]")
case("ait-1", {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"}}, "invariant", "AllergyIntolerance")
case("ait-2", {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"},
               "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                              "code": "active"}]},
               "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                                                  "code": "entered-in-error"}]}}, "invariant", "AllergyIntolerance")
case("mdd-1-timezones", {"resourceType": "MedicationDispense", "status": "completed", "medicationCodeableConcept": {"text": "x"},
                         "whenPrepared": "2024-01-01T10:00:00Z", "whenHandedOver": "2024-01-01T11:00:00+02:00"},
     "invariant", "MedicationDispense")
case("task-inv-1", {"resourceType": "Task", "status": "draft", "intent": "order", "authoredOn": "2024-01-02",
                    "lastModified": "2024-01-01"}, "invariant", "Task")

# --- references ---------------------------------------------------------------------------------------
case("ref-not-a-reference", with_(O, subject={"reference": "not a ref"}), "value", "Observation.subject.reference")
case("ref-unknown-type", with_(O, subject={"reference": "Foo/1"}), "value", "Observation.subject.reference")
case("ref-wrong-target", with_(O, subject={"reference": "Practitioner/1"}), "value", "Observation.subject.reference")
case("ref-bad-id", with_(O, subject={"reference": "Patient/a b"}), "value", "Observation.subject.reference")
case("ref-wrong-target-careplan", with_(C, subject={"reference": "Observation/1"}), "value", "CarePlan.subject.reference")
MED = {"resourceType": "Medication", "id": "x"}
case("ref-contained-wrong-target", with_(O, contained=[MED], subject={"reference": "#x"}), "value",
     "Observation.subject.reference")
case("ref-contained-type-disagrees", with_(O, contained=[{"resourceType": "Patient", "id": "x"}],
                                           subject={"reference": "#x", "type": "Group"}),
     "value", "Observation.subject.reference")
case("ref-container-wrong-target", with_(O, contained=[{
    "resourceType": "Observation", "id": "x", "status": "final", "code": {"text": "y"},
    "subject": {"reference": "#"}}], hasMember=[{"reference": "#x"}]),
     "value", "Observation.contained[0].subject.reference")
case("ref-absolute-own-server-wrong-target", with_(O, subject={"reference": "http://testserver/fhir/Medication/1"}),
     "value", "Observation.subject.reference")
case("ref-absolute-restful-wrong-target", with_(O, subject={
    "reference": "https://other.example.org/fhir/R4/Practitioner/7/_history/2"}),
     "value", "Observation.subject.reference")

# --- code: "no whitespace other than single spaces in the contents" (datatypes.html#code) ---------------
case("code-tab", with_(P, language="en\tUS"), "value", "Patient.language")
case("code-newline", with_(P, language="en\nUS"), "value", "Patient.language")
case("code-double-space", with_(P, language="en  US"), "value", "Patient.language")
case("code-tab-in-coding", with_(O, code={"coding": [{"system": "http://loinc.org", "code": "44249\t1"}]}),
     "value", "Observation.code.coding[0].code")

# --- contained resources (references.html#contained: they share their container's id space) -------
ORG_A, ORG_B = ({"resourceType": "Organization", "id": "o", "name": "a"},
                {"resourceType": "Organization", "id": "o", "name": "b"})
case("contained-duplicate-id", with_(P, contained=[ORG_A, ORG_B], managingOrganization={"reference": "#o"}),
     "value", "Patient.contained[1].id")
case("contained-duplicate-id-third", with_(P, contained=[ORG_A, {**ORG_B, "id": "p"}, {**ORG_B, "id": "o"}],
                                           managingOrganization={"reference": "#o"}),
     "value", "Patient.contained[2].id")
case("contained-duplicate-id-nested-parameters", {"resourceType": "Parameters", "parameter": [
    {"name": "r", "resource": with_(P, contained=[ORG_A, ORG_B], managingOrganization={"reference": "#o"})}]},
     "value", "Parameters.parameter[0].resource.contained[1].id")

# json.html: null appears only inside arrays (keeping a value array and its `_` array aligned)
case("null-primitive-extension", with_(P, birthDate="2000", _birthDate=None), "structure", "Patient.birthDate")
case("null-primitive-extension-array", with_(P, name=[{"given": ["a"], "_given": None}]), "structure",
     "Patient.name[0].given")

CASES = [c for c in CASES if c[2] is not None]


@pytest.mark.parametrize("name,resource,code,expression", CASES, ids=[c[0] for c in CASES])
def test_base_rejects(name: str, resource: dict, code: str, expression: str) -> None:
    issues = [i for i in validate_resource(resource) if i.is_error]
    assert any(i.code == code and expression in i.expression for i in issues), issues
    assert not [i for i in validate_profiles(resource) if i.is_error] if isinstance(resource.get("meta"), dict) else True


@pytest.mark.parametrize("subject", [
    "#p",  # a contained Patient
    "http://testserver/fhir/Patient/1",
    "https://other.example.org/fhir/R4/Group/g/_history/3",
    "http://example.org/documents/Medication",  # no RESTful shape: names no type
    "http://example.org/fhir/Unknown/1",  # not a resource type: not a RESTful FHIR URL
    "urn:uuid:8a3bf6d2-7a3e-4d35-9f5e-0a1b2c3d4e5f",
])
def test_references_of_an_allowed_type_or_of_no_type_pass(subject: str) -> None:
    contained = [{"resourceType": "Patient", "id": "p"}] if subject == "#p" else DROP
    resource = with_(O, contained=contained, subject={"reference": subject})
    assert not [i for i in validate_resource(resource) if i.is_error]


@pytest.mark.parametrize("broken", [["Patient"], {"a": 1}, 5, None, "Unknown"])
def test_a_reference_to_a_contained_resource_without_a_valid_type_reports_only_the_type(broken) -> None:
    resource = with_(O, contained=[{"resourceType": broken, "id": "x"}], subject={"reference": "#x"})
    errors = [i for i in validate_resource(resource) if i.is_error]
    assert errors and all(i.expression[0].startswith("Observation.contained[0]") for i in errors), errors


def test_the_container_is_a_valid_target_of_a_contained_resource() -> None:
    resource = with_(O, contained=[{"resourceType": "Observation", "id": "x", "status": "final",
                                    "code": {"text": "y"}, "hasMember": [{"reference": "#"}]}],
                     hasMember=[{"reference": "#x"}])
    assert not [i for i in validate_resource(resource) if i.is_error]


def test_a_code_may_have_single_spaces_between_words() -> None:
    resource = with_(O, code={"coding": [{"system": "http://example.org/cs", "code": "two words here"}]})
    assert not [i for i in validate_resource(resource) if i.is_error]


def test_contained_resources_with_distinct_ids_are_valid() -> None:
    resource = with_(P, contained=[ORG_A, {**ORG_B, "id": "p"}], managingOrganization={"reference": "#o"},
                     generalPractitioner=[{"reference": "#p"}])
    assert not [i for i in validate_resource(resource) if i.is_error]


def test_timezones_are_honoured_in_date_time_order() -> None:
    # 01:46-04:00 is 05:46Z, before 01:16-05:00 = 06:16Z (a Synthea case a naive comparison gets wrong)
    r = with_(OBSERVATION, effectiveDateTime=DROP, effectivePeriod={
        "start": "2017-11-05T01:46:40-04:00", "end": "2017-11-05T01:16:40-05:00"})
    assert validate_resource(r) == []


def test_valid_seeds_are_clean() -> None:
    for r in (PATIENT, OBSERVATION, CAREPLAN):
        assert validate_resource(r) == []


def test_expected_type_mismatch_is_an_error_on_the_type_name() -> None:
    issues = validate_resource(PATIENT, expected_type="Observation")
    assert [(i.code, i.expression) for i in issues] == [("invalid", ("Observation",))]


def test_missing_resource_type() -> None:
    issues = validate_resource({"id": "x"}, expected_type="Patient")
    assert issues and issues[0].code == "structure" and issues[0].expression == ("Patient",)


def test_non_object_resource() -> None:
    assert validate_resource([PATIENT])[0].code == "structure"


def test_known_resource_types_are_the_146_concrete_r4_types() -> None:
    types = known_resource_types()
    assert len(types) == 146
    assert {"Patient", "CarePlan", "Goal", "Parameters", "Bundle"} <= types
    assert not {"Resource", "DomainResource", "SubscriptionStatus"} & types


def test_parameters_choice_expression() -> None:
    params = {"resourceType": "Parameters", "parameter": [{"name": "a", "valueBoolean": "true"}]}
    issues = validate_resource(params)
    assert [(i.code, i.expression) for i in issues] == [("value", ("Parameters.parameter[0].value.ofType(boolean)",))]


def test_aligned_nulls_with_extensions_are_valid() -> None:
    r = with_(PATIENT, name=[{"given": ["A", None], "_given": [None, {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}]}])
    assert validate_resource(r) == []


def test_a_primitive_with_a_value_may_carry_only_an_element_id() -> None:
    # ele-1 is hasValue() or children: the value is there (json.html shows "_birthDate": {"id": ...})
    assert validate_resource(with_(PATIENT, birthDate="1970-01-01", _birthDate={"id": "bd"})) == []
    assert validate_resource(with_(PATIENT, name=[{"given": ["A", "C"], "_given": [None, {"id": "g2"}]}])) == []


def test_decimal_precision_survives_and_validates() -> None:
    r = parse_json(b'{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.50}}')
    assert validate_resource(r) == []


def test_extensible_and_preferred_bindings_never_reject() -> None:
    r = with_(OBSERVATION, category=[{"coding": [{"system": "http://example.org", "code": "whatever"}]}],
              interpretation=[{"coding": [{"system": "http://example.org", "code": "zz"}]}])
    assert validate_resource(r) == []


# --- profiles (the 422 stage) ---------------------------------------------------------------------------
PROFILE = "http://example.org/ipt-test/StructureDefinition/test-careplan"
PHASE_VS = "http://example.org/ipt-test/ValueSet/phase"
PHASE_CS = "http://example.org/ipt-test/CodeSystem/phase"


@pytest.fixture(scope="module", autouse=True)
def _profile() -> None:
    register_code_system({"resourceType": "CodeSystem", "url": PHASE_CS, "content": "complete",
                          "concept": [{"code": "initial"}, {"code": "middle"}, {"code": "termination"}]})
    register_value_set({"resourceType": "ValueSet", "url": PHASE_VS, "compose": {"include": [{"system": PHASE_CS}]}})
    register_profile({
        "resourceType": "StructureDefinition", "url": PROFILE, "type": "CarePlan", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/CarePlan",
        "differential": {"element": [
            {"id": "CarePlan", "path": "CarePlan", "constraint": [
                {"key": "tst-1", "severity": "error", "human": "A plan needs a period", "expression": "period.exists()"}]},
            {"id": "CarePlan.intent", "path": "CarePlan.intent", "fixedCode": "plan"},
            {"id": "CarePlan.title", "path": "CarePlan.title", "min": 1},
            {"id": "CarePlan.category", "path": "CarePlan.category", "min": 1, "max": "2",
             "slicing": {"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"}},
            {"id": "CarePlan.category:ipt", "path": "CarePlan.category", "sliceName": "ipt", "min": 1, "max": "1",
             "patternCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "718347000"}]}},
            {"id": "CarePlan.extension", "path": "CarePlan.extension",
             "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}},
            {"id": "CarePlan.extension:phase", "path": "CarePlan.extension", "sliceName": "phase", "min": 1, "max": "1",
             "type": [{"code": "Extension", "profile": ["http://example.org/ipt-test/StructureDefinition/phase"]}]},
            {"id": "CarePlan.subject", "path": "CarePlan.subject",
             "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}]},
            {"id": "CarePlan.activity.detail.code", "path": "CarePlan.activity.detail.code", "min": 1,
             "binding": {"strength": "required", "valueSet": PHASE_VS}},
            {"id": "CarePlan.activity.detail.scheduled[x]", "path": "CarePlan.activity.detail.scheduled[x]",
             "type": [{"code": "Period"}]},
            {"id": "CarePlan.activity.detail.kind", "path": "CarePlan.activity.detail.kind", "max": "0"},
            {"id": "CarePlan.goal", "path": "CarePlan.goal", "max": "1"},
        ]},
    })


IPT_CAT = {"coding": [{"system": "http://snomed.info/sct", "code": "718347000"}]}
GOOD = {
    "resourceType": "CarePlan", "meta": {"profile": [PROFILE]}, "status": "active", "intent": "plan", "title": "IPT",
    "subject": {"reference": "Patient/p1"}, "period": {"start": "2024-01-01"}, "category": [IPT_CAT],
    "extension": [{"url": "http://example.org/ipt-test/StructureDefinition/phase", "valueCode": "initial"}],
    "activity": [{"detail": {"status": "scheduled", "code": {"coding": [{"system": PHASE_CS, "code": "initial"}]}}}],
}


def detail(**kw: Any) -> list:
    d = {"status": "scheduled", "code": {"coding": [{"system": PHASE_CS, "code": "initial"}]}}
    d.update(kw)
    return [{"detail": d}]


PROFILE_CASES: list[tuple[str, dict, str, str]] = [
    ("fixed-intent", with_(GOOD, intent="proposal"), "value", "CarePlan.intent"),
    ("min-title", with_(GOOD, title=DROP), "required", "CarePlan.title"),
    ("min-category", with_(GOOD, category=DROP), "required", "CarePlan.category"),
    ("max-category", with_(GOOD, category=[IPT_CAT, {"text": "a"}, {"text": "b"}]), "structure", "CarePlan.category"),
    ("slice-missing", with_(GOOD, category=[{"text": "other"}]), "required", "CarePlan.category"),
    ("slice-too-many", with_(GOOD, category=[IPT_CAT, IPT_CAT]), "structure", "CarePlan.category"),
    ("extension-slice-missing", with_(GOOD, extension=DROP), "required", "CarePlan.extension"),
    ("extension-slice-twice", with_(GOOD, extension=GOOD["extension"] * 2), "structure", "CarePlan.extension"),
    ("target-profile", with_(GOOD, subject={"reference": "Group/g1"}), "value", "CarePlan.subject.reference"),
    ("binding-bogus-code", with_(GOOD, activity=detail(code={"coding": [{"system": PHASE_CS, "code": "bogus"}]})),
     "code-invalid", "CarePlan.activity[0].detail.code"),
    ("binding-wrong-system", with_(GOOD, activity=detail(code={"coding": [{"system": "http://x", "code": "initial"}]})),
     "code-invalid", "CarePlan.activity[0].detail.code"),
    ("nested-min", with_(GOOD, activity=detail() + [{"detail": {"status": "scheduled"}}]), "required",
     "CarePlan.activity[1].detail.code"),
    ("choice-type-restricted", with_(GOOD, activity=detail(scheduledString="weekly")), "structure",
     "CarePlan.activity[0].detail.scheduled.ofType(string)"),
    ("max-zero", with_(GOOD, activity=detail(kind="Appointment")), "structure", "CarePlan.activity[0].detail.kind"),
    ("max-goal", with_(GOOD, goal=[{"reference": "Goal/1"}, {"reference": "Goal/2"}]), "structure", "CarePlan.goal"),
    ("profile-invariant", with_(GOOD, period=DROP), "invariant", "CarePlan"),
]


@pytest.mark.parametrize("name,resource,code,expression", PROFILE_CASES, ids=[c[0] for c in PROFILE_CASES])
def test_profile_rejects(name: str, resource: dict, code: str, expression: str) -> None:
    assert [i for i in validate_resource(resource) if i.is_error] == []  # a 422, not a 400
    issues = [i for i in validate_profiles(resource) if i.is_error]
    assert any(i.code == code and expression in i.expression for i in issues), issues


def test_profile_good_instance_is_clean() -> None:
    assert validate_resource(GOOD) == []
    assert validate_profiles(GOOD) == []


def test_unknown_profile_is_a_warning_only() -> None:
    r = with_(GOOD, meta={"profile": ["http://example.org/unknown"]})
    issues = validate_profiles(r)
    assert [(i.severity, i.expression) for i in issues] == [("warning", ("CarePlan.meta.profile[0]",))]


def test_explicit_profiles_argument_overrides_meta() -> None:
    r = with_(GOOD, meta=DROP, intent="proposal")
    assert validate_profiles(r) == []
    assert any(i.expression == ("CarePlan.intent",) for i in validate_profiles(r, [PROFILE]))


def test_case_table_is_large_enough() -> None:
    assert len(CASES) + len(PROFILE_CASES) >= 150


def test_profile_on_a_registered_profile_checks_both() -> None:
    child = "http://example.org/ipt-test/StructureDefinition/test-careplan-strict"
    register_profile({
        "resourceType": "StructureDefinition", "url": child, "type": "CarePlan", "derivation": "constraint",
        "baseDefinition": PROFILE,
        "differential": {"element": [{"id": "CarePlan.description", "path": "CarePlan.description", "min": 1}]},
    })
    r = with_(GOOD, intent="proposal")
    exprs = {i.expression for i in validate_profiles(r, [child]) if i.is_error}
    assert {("CarePlan.intent",), ("CarePlan.description",)} <= exprs


def test_snapshot_profile_with_fixed_values_and_closed_slicing() -> None:
    url = "http://example.org/ipt-test/StructureDefinition/test-observation"
    register_profile({
        "resourceType": "StructureDefinition", "url": url, "type": "Observation", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "snapshot": {"element": [
            {"id": "Observation", "path": "Observation", "min": 0, "max": "*"},
            {"id": "Observation.status", "path": "Observation.status", "min": 1, "max": "1", "fixedCode": "final"},
            {"id": "Observation.code.coding", "path": "Observation.code.coding", "min": 1, "max": "*",
             "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "closed"}},
            {"id": "Observation.code.coding:loinc", "path": "Observation.code.coding", "sliceName": "loinc",
             "min": 1, "max": "1"},
            {"id": "Observation.code.coding:loinc.system", "path": "Observation.code.coding.system", "min": 1,
             "max": "1", "fixedUri": "http://loinc.org"},
            {"id": "Observation.code.coding:loinc.code", "path": "Observation.code.coding.code", "min": 1,
             "max": "1", "fixedCode": "44249-1"},
        ]},
    })
    ok = with_(OBSERVATION, meta={"profile": [url]})
    assert validate_profiles(ok) == []
    bad = with_(ok, status="amended", code={"coding": [{"system": "http://loinc.org", "code": "1-8"},
                                                       {"system": "http://snomed.info/sct", "code": "1"}]})
    issues = {(i.code, i.expression) for i in validate_profiles(bad) if i.is_error}
    assert ("value", ("Observation.status",)) in issues
    assert ("value", ("Observation.code.coding[0].code",)) in issues
    assert ("structure", ("Observation.code.coding[1]",)) in issues
