"""Realistic IPT examples for the OpenAPI document, taken from the deterministic demo data generator
(one synthetic IPT course: patient, clinician, diagnosis, problem area, plan, goals, sessions, PHQ-9
scores), so the examples are the same resources the profiles and rules are tested on."""
from __future__ import annotations

import copy
from functools import lru_cache

from ipt_fhir.domain.canonical import CPT, SNOMED, SNOMED_IPT

LAST_UPDATED = "2025-06-02T09:30:00.000+00:00"


@lru_cache(maxsize=1)
def demo_course() -> dict:
    """One transaction Bundle of a synthetic IPT course (urn:uuid references between entries)."""
    from ipt_fhir.domain.demo_data import generate_courses

    return next(generate_courses(1, seed=3))


def _replace_refs(node, mapping: dict[str, str]):
    if isinstance(node, dict):
        return {k: (mapping.get(v, v) if k == "reference" and isinstance(v, str) else _replace_refs(v, mapping))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_refs(v, mapping) for v in node]
    return node


@lru_cache(maxsize=1)
def stored_examples() -> dict[str, dict]:
    """Resource type -> a stored resource (id, meta.versionId, references as Type/id), first of each
    type in the demo course; plus a hand-made Procedure (the demo data records sessions as Encounters)."""
    bundle = demo_course()
    mapping = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'].rsplit(':', 1)[1]}"
               for e in bundle["entry"]}
    out: dict[str, dict] = {}
    for entry in bundle["entry"]:
        resource = _replace_refs(copy.deepcopy(entry["resource"]), mapping)
        rtype = resource["resourceType"]
        if rtype in out:
            continue
        meta = {"versionId": "1", "lastUpdated": LAST_UPDATED, **resource.get("meta", {})}
        out[rtype] = {"resourceType": rtype, "id": entry["fullUrl"].rsplit(":", 1)[1], "meta": meta,
                      **{k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}}
    patient = f"Patient/{out['Patient']['id']}"
    encounter = f"Encounter/{out['Encounter']['id']}"
    out["Procedure"] = {
        "resourceType": "Procedure", "id": "ipt-session-procedure-1",
        "meta": {"versionId": "1", "lastUpdated": LAST_UPDATED},
        "status": "completed",
        "category": {"coding": [{"system": SNOMED, "code": "409063005", "display": "Counseling"}]},
        "code": {"coding": [{"system": SNOMED, "code": SNOMED_IPT, "display": "Interpersonal psychotherapy"},
                            {"system": CPT, "code": "90837", "display": "Psychotherapy, 60 minutes with patient"}],
                 "text": "Interpersonal psychotherapy session"},
        "subject": {"reference": patient},
        "encounter": {"reference": encounter},
        "performedPeriod": {"start": "2025-04-28T14:00:00Z", "end": "2025-04-28T14:50:00Z"},
        "basedOn": [{"reference": f"CarePlan/{out['CarePlan']['id']}"}],
    }
    return out


def create_example(resource_type: str) -> dict | None:
    """A request body for create: the stored example without server-assigned id and meta versions."""
    stored = stored_examples().get(resource_type)
    if stored is None:
        return None
    body = copy.deepcopy(stored)
    body.pop("id", None)
    meta = {k: v for k, v in body.pop("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        return {"resourceType": body.pop("resourceType"), "meta": meta, **body}
    return body


def update_example(resource_type: str) -> dict | None:
    stored = stored_examples().get(resource_type)
    if stored is None:
        return None
    body = copy.deepcopy(stored)
    body["meta"] = {k: v for k, v in body["meta"].items() if k not in ("versionId", "lastUpdated")}
    if not body["meta"]:
        body.pop("meta")
    return body


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


def transaction_response_example() -> dict:
    entries = []
    for entry in demo_course()["entry"][:3]:
        rtype = entry["resource"]["resourceType"]
        rid = entry["fullUrl"].rsplit(":", 1)[1]
        entries.append({"response": {"status": "201 Created", "location": f"{rtype}/{rid}/_history/1",
                                     "etag": 'W/"1"', "lastModified": LAST_UPDATED}})
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


def outcome_example(status: int) -> dict:
    issues = {
        400: ("error", "structure", "Unknown element 'statuss'", "CarePlan.statuss"),
        404: ("error", "not-found", "CarePlan/unknown-id is not known", None),
        409: ("error", "conflict", "CarePlan/7 was changed concurrently; retry with the current version", None),
        410: ("error", "deleted", "CarePlan/7 was deleted (version 3)", None),
        412: ("error", "conflict", "If-Match W/\"2\" does not match the current version W/\"3\" of CarePlan/7",
              None),
        422: ("error", "business-rule",
              "An IPT CarePlan must name its problem area (extension ipt-problem-area-focus)", "CarePlan.extension"),
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
        {"name": "subject", "valueReference": {"reference": f"Patient/{patient}"}},
        {"name": "practitioner", "valueReference": {"reference": f"Practitioner/{practitioner}"}},
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
