"""Realistic IPT examples for the OpenAPI document, taken from the deterministic demo data generator
(one synthetic IPT course: patient, clinician, diagnosis, problem area, plan, goals, sessions, PHQ-9
scores), so the examples are the same resources the profiles and rules are tested on."""
from __future__ import annotations

import copy
from functools import lru_cache

from ipt_fhir.domain.canonical import CPT, SNOMED, SNOMED_IPT

from . import openapi_walkthrough as walk

LAST_UPDATED = "2025-06-02T09:30:00.000+00:00"


@lru_cache(maxsize=1)
def demo_course() -> dict:
    """One transaction Bundle of a synthetic IPT course (urn:uuid references between entries): standard
    individual IPT, 14 sessions ordered (the protocol allows 20: room for the course extension example)."""
    from ipt_fhir.domain.demo_data import generate_courses

    return next(generate_courses(1, seed=6))


def _nth_of_type(resource_type: str, n: int) -> dict | None:
    """The n-th (0-based) resource of a type in the demo course, references as Type/fixed-id (see
    openapi_walkthrough) where they point at a walk-through resource and pruned where they do not."""
    bundle = demo_course()
    first: dict[str, str] = {}
    for entry in bundle["entry"]:
        rtype = entry["resource"]["resourceType"]
        if rtype in walk.FIXED_IDS and rtype not in first:
            first[rtype] = entry["fullUrl"]
    mapping = {url: f"{rtype}/{walk.FIXED_IDS[rtype]}" for rtype, url in first.items()}
    found = [e for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]
    if n >= len(found):
        return None
    return _without_dangling(_replace_refs(copy.deepcopy(found[n]["resource"]), mapping))


def _replace_refs(node, mapping: dict[str, str]):
    if isinstance(node, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else _replace_refs(v, mapping))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, mapping) for v in node]
    return node


def _without_dangling(node):
    """Drop references to demo resources the walk-through does not create (other goals, sessions, the
    problem area): on a fresh server the rules would refuse them. Emptied arrays and objects go too."""
    def dangling(value) -> bool:
        return isinstance(value, dict) and str(value.get("reference", "")).startswith("urn:uuid:")

    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if dangling(v):
                continue
            v = _without_dangling(v)
            if v not in ([], {}):
                out[k] = v
        return out
    if isinstance(node, list):
        return [w for w in (_without_dangling(v) for v in node if not dangling(v)) if w not in ([], {})]
    return node


@lru_cache(maxsize=1)
def stored_examples() -> dict[str, dict]:
    """Resource type -> the walk-through resource as stored (fixed id, meta.versionId): the first of
    each type in the demo course, plus a hand-made Procedure (the demo data records sessions as Encounters)."""
    out: dict[str, dict] = {}
    for rtype in walk.FIXED_IDS:
        resource = _nth_of_type(rtype, 0) if rtype != "Procedure" else _procedure()
        meta = {"versionId": "1", "lastUpdated": LAST_UPDATED, **resource.get("meta", {})}
        out[rtype] = {"resourceType": rtype, "id": walk.FIXED_IDS[rtype], "meta": meta,
                      **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}
    return out


def _procedure() -> dict:
    ids = walk.FIXED_IDS
    return {
        "resourceType": "Procedure",
        "status": "completed",
        "category": {"coding": [{"system": SNOMED, "code": "409063005", "display": "Counseling"}]},
        "code": {"coding": [{"system": SNOMED, "code": SNOMED_IPT, "display": "Interpersonal psychotherapy"},
                            {"system": CPT, "code": "90837", "display": "Psychotherapy, 60 minutes with patient"}],
                 "text": "Interpersonal psychotherapy session"},
        "subject": {"reference": f"Patient/{ids['Patient']}"},
        "encounter": {"reference": f"Encounter/{ids['Encounter']}"},
        "performedPeriod": {"start": "2025-04-03T15:00:00Z", "end": "2025-04-03T15:50:00Z"},
        "basedOn": [{"reference": f"CarePlan/{ids['CarePlan']}"}],
    }


def update_example(resource_type: str) -> dict:
    """A request body for update (PUT [type]/[id]): the walk-through resource without server-set meta."""
    body = copy.deepcopy(stored_examples()[resource_type])
    body["meta"] = {k: v for k, v in body["meta"].items() if k not in ("versionId", "lastUpdated")}
    if not body["meta"]:
        body.pop("meta")
    return body


def create_example(resource_type: str) -> tuple[dict, str] | None:
    """A request body for create (POST [type]) and what it records: another resource of the walk-through
    course, referring to the PUT ones (a copy of one would break a rule: session numbers are unique, a
    plan's courses order at most the protocol's maximum, conditional creates match one NPI)."""
    made = _CREATED.get(resource_type)
    if made is None:
        return None
    body, what = made()
    body = {k: v for k, v in body.items() if k != "id"}
    meta = {k: v for k, v in body.pop("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    return ({"resourceType": body.pop("resourceType"), **({"meta": meta} if meta else {}), **body}, what)


def _copy_of(resource_type: str) -> dict:
    return copy.deepcopy(stored_examples()[resource_type])


def _second_session() -> tuple[dict, str]:
    return _nth_of_type("Encounter", 1), "session 2 of the course, held a week after session 1"


def _second_score() -> tuple[dict, str]:
    return _nth_of_type("Observation", 1), "the PHQ-9 total of the second week"


def _problem_area() -> tuple[dict, str]:
    return _nth_of_type("Condition", 1), "the IPT problem area of the course"


def _course_extension() -> tuple[dict, str]:
    course = _copy_of("ServiceRequest")
    course["quantityQuantity"]["value"] = course["occurrenceTiming"]["repeat"]["count"] = 4
    course["code"]["text"] = "Four more sessions of standard individual IPT (the protocol allows up to 20)"
    course["occurrenceTiming"]["repeat"].pop("boundsPeriod", None)
    return course, "four more sessions ordered for the plan (an extension of the course)"


def _second_plan() -> tuple[dict, str]:
    plan = _copy_of("CarePlan")
    plan.pop("activity", None)  # its own course is ordered after it, as in the walk-through
    plan["status"] = "draft"
    return plan, "a draft plan for the same patient, before its course is ordered"


def _second_therapist() -> tuple[dict, str]:
    from ipt_fhir.domain.demo_data import NPI_SYSTEM, npi

    therapist = _copy_of("Practitioner")
    therapist["identifier"] = [{"system": NPI_SYSTEM, "value": npi(900000001)}]
    therapist["name"] = [{"family": "Okonkwo", "given": ["Ada"], "prefix": ["Dr."]}]
    return therapist, "a second therapist (another NPI: the transaction example matches its therapist by NPI)"


_CREATED = {
    "Patient": lambda: (_copy_of("Patient"), "the patient, registered again (a second Patient)"),
    "Practitioner": _second_therapist,
    "Condition": _problem_area,
    "Goal": lambda: (_copy_of("Goal"), "a second goal addressing the diagnosis"),
    "CarePlan": _second_plan,
    "ServiceRequest": _course_extension,
    "Encounter": _second_session,
    "Observation": _second_score,
    "Procedure": lambda: (_copy_of("Procedure"), "the therapy delivered in session 1, for billing"),
}


def searchset_example(resource_type: str, base: str = "https://ipt.example.org/fhir") -> dict:
    stored = stored_examples().get(resource_type)
    entries = [] if stored is None else [{"fullUrl": f"{base}/{resource_type}/{stored['id']}", "resource": stored,
                                         "search": {"mode": "match"}}]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries),
            "link": [{"relation": "self", "url": f"{base}/{resource_type}?_count=20"}], "entry": entries}


def history_example(resource_type: str, base: str = "https://ipt.example.org/fhir") -> dict:
    stored = stored_examples()[resource_type if resource_type in stored_examples() else "CarePlan"]
    rtype = stored["resourceType"]
    return {"resourceType": "Bundle", "type": "history", "total": 1,
            "link": [{"relation": "self", "url": f"{base}/{rtype}/{stored['id']}/_history"}],
            "entry": [{"fullUrl": f"{base}/{rtype}/{stored['id']}", "resource": stored,
                       "request": {"method": "POST", "url": rtype},
                       "response": {"status": "201 Created", "etag": 'W/"1"', "lastModified": LAST_UPDATED}}]}


def transaction_example() -> dict:
    return demo_course()


def transaction_response_example(base: str = "https://ipt.example.org/fhir") -> dict:
    """As answered by default (Prefer: return=representation): each entry with its fullUrl, the stored
    resource and the response (with return=minimal the response alone)."""
    entries = []
    for entry in demo_course()["entry"][:3]:
        rtype = entry["resource"]["resourceType"]
        rid = entry["fullUrl"].rsplit(":", 1)[1]
        meta = {**(entry["resource"].get("meta") or {}), "versionId": "1", "lastUpdated": LAST_UPDATED}
        resource = {"resourceType": rtype, "id": rid, "meta": meta,
                    **{k: v for k, v in entry["resource"].items() if k not in ("resourceType", "id", "meta")}}
        entries.append({"fullUrl": f"{base}/{rtype}/{rid}", "resource": resource,
                        "response": {"status": "201 Created", "location": f"{rtype}/{rid}/_history/1",
                                     "etag": 'W/"1"', "lastModified": LAST_UPDATED}})
    return {"resourceType": "Bundle", "type": "transaction-response",
            "link": [{"relation": "self", "url": base}], "entry": entries}


def outcome_example(status: int) -> dict:
    """The OperationOutcome of an error as the server words it (the messages of the code paths that raise
    them; a rule the server does enforce for the 422)."""
    issues = {
        400: ("error", "structure", "Unknown element 'statuss'", "CarePlan.statuss"),
        404: ("error", "not-found", "CarePlan/unknown-id is not known", "CarePlan"),
        409: ("error", "conflict", "CarePlan/7 was changed by a concurrent request; read it again", "CarePlan"),
        410: ("error", "deleted", "CarePlan/7 was deleted", "CarePlan"),
        412: ("error", "conflict", "If-Match version 2 does not hold: the current version of CarePlan/7 is 3",
              "CarePlan"),
        422: ("error", "business-rule", "CarePlan status cannot change from completed to draft", "CarePlan.status"),
    }
    severity, code, text, expression = issues.get(status, ("error", "processing", "The request failed", None))
    issue = {"severity": severity, "code": code, "diagnostics": text}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def apply_parameters_example() -> dict:
    patient = stored_examples()["Patient"]["id"]
    practitioner = stored_examples()["Practitioner"]["id"]
    return {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueString": f"Patient/{patient}"},
        {"name": "practitioner", "valueString": f"Practitioner/{practitioner}"},
        {"name": "start", "valueDate": "2025-03-03"},
        {"name": "weekday", "valueCode": "mon"},
        {"name": "store", "valueBoolean": True},
    ]}


def progress_parameters_example() -> dict:
    """The shape $ipt-progress answers with (README "Five-minute tour": after two held sessions)."""
    plan = stored_examples()["CarePlan"]["id"]
    patient = stored_examples()["Patient"]["id"]
    return {"resourceType": "Parameters", "parameter": [
        {"name": "carePlan", "valueReference": {"reference": f"CarePlan/{plan}"}},
        {"name": "subject", "valueReference": {"reference": f"Patient/{patient}"}},
        {"name": "status", "valueCode": "active"},
        {"name": "protocol", "valueCanonical": "http://ipt-fhir.org/fhir/PlanDefinition/ipt-standard-individual"},
        {"name": "sessionsPlanned", "valueInteger": 16},
        {"name": "sessionsAttended", "valueInteger": 2},
        {"name": "sessionsMissed", "valueInteger": 0},
        {"name": "sessionsRemaining", "valueInteger": 14},
        {"name": "currentPhase", "valueCoding": {"system": "http://ipt-fhir.org/fhir/CodeSystem/ipt-phase",
                                                 "code": "initial"}},
        {"name": "phq9Baseline", "part": [{"name": "value", "valueDecimal": 19},
                                          {"name": "date", "valueDateTime": "2025-03-03T09:50:00Z"}]},
        {"name": "phq9Latest", "part": [{"name": "value", "valueDecimal": 14},
                                        {"name": "date", "valueDateTime": "2025-03-10T09:50:00Z"}]},
        {"name": "phq9Change", "valueDecimal": -5},
        {"name": "phq9Response", "valueBoolean": False},
        {"name": "phq9Remission", "valueBoolean": False},
    ]}
