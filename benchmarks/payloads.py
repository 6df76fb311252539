"""Realistic request bodies for benchmarks: an IPT CarePlan of about 3 KB."""
from __future__ import annotations

import json


def careplan(patient_id: str) -> dict:
    return {
        "resourceType": "CarePlan",
        "text": {"status": "generated", "div": (
            '<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Interpersonal psychotherapy</b>, 16 weekly sessions '
            "of 50 minutes. Problem area: role transition (new parenthood). Goals: PHQ-9 below 5 by week 16; "
            "rebuild a social support network; communicate needs to partner.</p></div>")},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1000.1", "value": f"ipt-{patient_id}"}],
        "status": "active",
        "intent": "plan",
        "category": [
            {"coding": [{"system": "http://hl7.org/fhir/us/core/CodeSystem/careplan-category",
                         "code": "assess-plan"}]},
            {"coding": [{"system": "http://snomed.info/sct", "code": "718347000",
                         "display": "Mental health care plan"}]},
        ],
        "title": "Interpersonal psychotherapy for major depressive disorder",
        "description": "Standard individual IPT course: initial phase (sessions 1-3) with interpersonal "
                       "inventory and choice of problem area, middle phase on role transition, termination "
                       "phase in the last three sessions.",
        "subject": {"reference": f"Patient/{patient_id}", "display": "Jane Example"},
        "period": {"start": "2026-01-05", "end": "2026-04-27"},
        "created": "2026-01-05T10:00:00+01:00",
        "author": {"reference": "Practitioner/therapist-1", "display": "Dr. A. Therapist"},
        "addresses": [{"reference": "Condition/mdd-1", "display": "Major depressive disorder"},
                      {"reference": "Condition/problem-area-1", "display": "Role transition"}],
        "contributor": [{"reference": f"Patient/{patient_id}"}, {"reference": "Practitioner/therapist-1"}],
        "careTeam": [{"reference": "CareTeam/ipt-team-1", "display": "Outpatient psychotherapy team"}],
        "supportingInfo": [{"reference": "QuestionnaireResponse/interpersonal-inventory-1",
                            "display": "Interpersonal inventory"},
                           {"reference": "Observation/phq9-baseline", "display": "PHQ-9 at intake: 17"}],
        "goal": [{"reference": "Goal/phq9-remission"}, {"reference": "Goal/support-network"}],
        "activity": [
            {"reference": {"reference": "ServiceRequest/ipt-course-1"}},
            {"detail": {
                "kind": "ServiceRequest",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "443730003",
                                     "display": "Interpersonal psychotherapy"}]},
                "status": "in-progress",
                "scheduledTiming": {"repeat": {"count": 16, "frequency": 1, "period": 1, "periodUnit": "wk",
                                               "duration": 50, "durationUnit": "min"}},
                "performer": [{"reference": "Practitioner/therapist-1"}],
                "description": "Weekly 50-minute individual IPT session",
            }},
        ],
        "note": [{"time": "2026-01-05T10:45:00+01:00", "text": "Patient agreed to the treatment contract: 16 "
                  "sessions, weekly, with PHQ-9 at every session; crisis plan discussed and documented."},
                 {"text": "Interpersonal inventory to be completed by session 3; partner may join session 6."},
                 {"text": "Sertraline 50 mg continued by the primary care physician; review at session 8."}],
    }


def careplan_bytes(patient_id: str) -> bytes:
    return json.dumps(careplan(patient_id)).encode()
