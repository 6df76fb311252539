"""A small in-memory IPT world for rule and progress tests: one applied course, stored as the server would."""
from __future__ import annotations

import copy
import itertools
from datetime import date

from ipt_fhir.domain.apply import apply_protocol
from ipt_fhir.domain.canonical import (
    CONDITION_CATEGORY, CS_PROBLEM_AREA, DEFAULT_CANONICAL_BASE, GOAL_PROFILE, LOINC, LOINC_PHQ9,
    OBSERVATION_CATEGORY, PROBLEM_AREA_PROFILE, SCORE_PROFILE, US_CORE_CONDITION_CATEGORY, canonical,
)
from ipt_fhir.domain.lookup import InMemoryLookup, resources_from_transaction

BASE = DEFAULT_CANONICAL_BASE
START = date(2025, 1, 6)  # a Monday
_ids = itertools.count(1)


def counter_ids():
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def problem_area(pid: str, code: str = "role-dispute", patient: str = "Patient/p1") -> dict:
    return {"resourceType": "Condition", "id": pid,
            "meta": {"profile": [canonical(BASE, "StructureDefinition", PROBLEM_AREA_PROFILE)]},
            "category": [{"coding": [{"system": US_CORE_CONDITION_CATEGORY, "code": "health-concern"}]}],
            "code": {"coding": [{"system": canonical(BASE, "CodeSystem", CS_PROBLEM_AREA), "code": code}]},
            "subject": {"reference": patient}}


def diagnosis(pid: str = "dx", patient: str = "Patient/p1") -> dict:
    return {"resourceType": "Condition", "id": pid,
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "370143000"}]},
            "subject": {"reference": patient}}


def goal(gid: str, addresses: list[str], patient: str = "Patient/p1", lifecycle: str = "active") -> dict:
    return {"resourceType": "Goal", "id": gid, "meta": {"profile": [canonical(BASE, "StructureDefinition", GOAL_PROFILE)]},
            "lifecycleStatus": lifecycle, "description": {"text": "PHQ-9 below 5"},
            "subject": {"reference": patient}, "addresses": [{"reference": a} for a in addresses]}


def phq9(oid: str, value, when: str, plan: str | None = "CarePlan/plan", encounter: str | None = None,
         patient: str = "Patient/p1", status: str = "final") -> dict:
    obs = {"resourceType": "Observation", "id": oid,
           "meta": {"profile": [canonical(BASE, "StructureDefinition", SCORE_PROFILE)]},
           "status": status, "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
           "code": {"coding": [{"system": LOINC, "code": LOINC_PHQ9}]},
           "subject": {"reference": patient}, "effectiveDateTime": when,
           "valueQuantity": {"value": value, "unit": "{score}", "system": "http://unitsofmeasure.org", "code": "{score}"}}
    if plan:
        obs["basedOn"] = [{"reference": plan}]
    if encounter:
        obs["encounter"] = {"reference": encounter}
    return obs


class World:
    """CarePlan/plan, ServiceRequest/course, Encounter/s1..sN (planned), problem area Condition/pa1,
    diagnosis Condition/dx, Goal/g1 for Patient/p1."""

    def __init__(self, protocol: str = "ipt-standard-individual", sessions: int | None = 12,
                 with_problem_area: bool = True) -> None:
        addresses = ["Condition/dx"] + (["Condition/pa1"] if with_problem_area else [])
        bundle = apply_protocol(protocol, "Patient/p1", "Practitioner/t1", START, sessions, "mon",
                                addresses=addresses, goals=["Goal/g1"], new_id=counter_ids())
        stored = resources_from_transaction(bundle)
        renamed = {}
        for r in stored:
            old = f"{r['resourceType']}/{r['id']}"
            if r["resourceType"] == "CarePlan":
                renamed[old] = "CarePlan/plan"
            elif r["resourceType"] == "ServiceRequest":
                renamed[old] = "ServiceRequest/course"
        n = 0
        for r in stored:
            if r["resourceType"] == "Encounter":
                n += 1
                renamed[f"Encounter/{r['id']}"] = f"Encounter/s{n}"
        self.resources = [_rename(r, renamed) for r in stored]
        self.resources += [diagnosis(), goal("g1", ["Condition/dx"])]
        if with_problem_area:
            self.resources.append(problem_area("pa1"))
        self.lookup = InMemoryLookup(self.resources)

    def get(self, rtype: str, rid: str) -> dict:
        return copy.deepcopy(self.lookup.read(rtype, rid))

    @property
    def plan(self) -> dict:
        return self.get("CarePlan", "plan")

    @property
    def course(self) -> dict:
        return self.get("ServiceRequest", "course")

    def session(self, n: int) -> dict:
        return self.get("Encounter", f"s{n}")

    def put(self, resource: dict) -> None:
        self.lookup.put(copy.deepcopy(resource))

    def hold(self, *numbers: int, status: str = "finished") -> None:
        for n in numbers:
            s = self.session(n)
            s["status"] = status
            self.put(s)


def _rename(value, renamed):
    if isinstance(value, dict):
        out = {k: _rename(v, renamed) for k, v in value.items()}
        if isinstance(out.get("reference"), str) and out["reference"] in renamed:
            out["reference"] = renamed[out["reference"]]
        key = f"{out.get('resourceType')}/{out.get('id')}"
        if "id" in out and key in renamed:
            out["id"] = renamed[key].split("/", 1)[1]
        return out
    if isinstance(value, list):
        return [_rename(v, renamed) for v in value]
    return value
