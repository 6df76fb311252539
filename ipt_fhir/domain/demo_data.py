"""Deterministic synthetic IPT courses, one transaction Bundle per patient.

Each Bundle: Patient, Practitioner (conditional create on its NPI, shared across Bundles), diagnosis
Condition, 1-2 problem-area Conditions, a CarePlan from one of the protocols with its course
ServiceRequest and session Encounters (held, missed as no-show or cancellation, planned), 2-3 Goals and
a PHQ-9 Observation per held session. About 60 % of patients respond (at least a 50 % drop), some drop
out (plan revoked). Bundle i depends only on (seed, i, as_of), so `--patients 10` is a prefix of
`--patients 100`. Every resource claiming an IPT profile passes the rules (tests check it).
"""
from __future__ import annotations

import random
import uuid
from datetime import date, time, timedelta
from typing import Iterator

from .apply import build_plan
from .canonical import (
    CONDITION_CATEGORY, CONDITION_CLINICAL, CONDITION_VER_STATUS, CS_ATTENDANCE, CS_MECHANISM, CS_PROBLEM_AREA,
    CS_TECHNIQUE, DEFAULT_CANONICAL_BASE, EXT_ATTENDANCE, EXT_MECHANISM, EXT_PROBLEM_AREA_FOCUS, EXT_TECHNIQUE,
    GOAL_ACHIEVEMENT, GOAL_PROFILE, ICD10CM, LOINC, LOINC_PHQ9, OBSERVATION_CATEGORY, PROBLEM_AREA_PROFILE,
    SCORE_PROFILE, SNOMED, UCUM, US_CORE_CONDITION_CATEGORY, V3_ACT_CODE, canonical,
)
from .lookup import resources_from_transaction
from .narrative import careplan_narrative
from .progress import compute_progress
from .protocols import get_protocol

DEFAULT_AS_OF = date(2025, 6, 2)
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"

PROTOCOL_WEIGHTS = (("ipt-standard-individual", 50), ("ipt-dynamic-interpersonal", 15), ("ipt-brief", 15),
                    ("ipt-who-group", 10), ("ipt-maintenance", 10))
DIAGNOSES = (
    ("370143000", "Major depressive disorder", "F33.1", "Major depressive disorder, recurrent, moderate", 60),
    ("36923009", "Major depression, single episode", "F32.1", "Major depressive disorder, single episode, moderate", 20),
    ("78667006", "Dysthymia", "F34.1", "Dysthymic disorder", 12),
    ("58703003", "Postpartum depression", "F53.0", "Postpartum depression", 8),
)
PROBLEM_AREAS = (
    ("grief", "Grief", "Z63.4", "Disappearance and death of family member", 20),
    ("role-dispute", "Role dispute", "Z63.0", "Problems in relationship with spouse or partner", 35),
    ("role-transition", "Role transition", "Z60.0", "Problems of adjustment to life-cycle transitions", 30),
    ("interpersonal-deficits", "Interpersonal deficits", None, None, 10),
    ("adjustment-difficulties", "Adjustment difficulties", None, None, 5),
)
AREA_GOALS = {
    "grief": ("Mourn the loss and re-engage with activities and relationships", "process-emotions"),
    "role-dispute": ("Resolve the dispute with the partner or renegotiate expectations", "improve-interpersonal-skills"),
    "role-transition": ("Adapt to the new role and build its supports", "enhance-social-support"),
    "interpersonal-deficits": ("Reduce social isolation and form new relationships", "enhance-social-support"),
    "adjustment-difficulties": ("Cope with the life change and regain routine", "decrease-interpersonal-stress"),
}
MIDDLE_TECHNIQUES = ("clarification", "communication-analysis", "exploration", "decision-analysis", "role-play",
                     "behaviour-practice")
GIVEN = (("Alex", "other"), ("Maria", "female"), ("Sam", "male"), ("Priya", "female"), ("Jordan", "male"),
         ("Chen", "male"), ("Fatima", "female"), ("Lucas", "male"), ("Amara", "female"), ("Noah", "male"),
         ("Sofia", "female"), ("Kenji", "male"), ("Aisha", "female"), ("Mateo", "male"), ("Ingrid", "female"),
         ("Tomas", "male"), ("Leila", "female"), ("Omar", "male"), ("Grace", "female"), ("Ravi", "male"))
FAMILY = ("Rivera", "Nguyen", "Okafor", "Schmidt", "Haddad", "Kowalski", "Tanaka", "Silva", "Johansson", "Patel",
          "Moreau", "Kim", "Osei", "Garcia", "Novak", "Hughes")
CLINICIANS = (("Dana", "Weiss"), ("Miguel", "Ortega"), ("Hannah", "Brooks"), ("Tariq", "Rahman"),
              ("Elena", "Petrova"), ("Samuel", "Adeyemi"), ("Julia", "Fischer"), ("Kofi", "Mensah"))


def generate_courses(patients: int, seed: int = 0, canonical_base: str = DEFAULT_CANONICAL_BASE, *,
                     as_of: date = DEFAULT_AS_OF) -> Iterator[dict]:
    """`patients` transaction Bundles, deterministic in (seed, index, as_of, canonical_base)."""
    for index in range(patients):
        yield _Course(seed, index, canonical_base.rstrip("/"), as_of).bundle()


def npi(number: int) -> str:
    """A 10-digit NPI with a valid check digit (Luhn over the 80840 prefix), from a 9-digit number."""
    body = f"{number:09d}"
    digits = [int(d) for d in "80840" + body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def _weighted(rng: random.Random, options):
    return rng.choices(options, weights=[o[-1] for o in options], k=1)[0]


class _Course:
    def __init__(self, seed: int, index: int, base: str, as_of: date) -> None:
        self.rng = random.Random(f"ipt-demo:{seed}:{index}")
        self.index, self.base, self.as_of = index, base, as_of
        self.entries: list[dict] = []

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, resource: dict, full_url: str | None = None, if_none_exist: str | None = None) -> str:
        full_url = full_url or f"urn:uuid:{self.new_id()}"
        request = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        return full_url

    def url(self, kind: str, id_: str) -> str:
        return canonical(self.base, kind, id_)

    def coding(self, cs: str, code: str, display: str | None = None) -> dict:
        c = {"system": self.url("CodeSystem", cs), "code": code}
        if display:
            c["display"] = display
        return c

    def ext(self, ext_id: str, **value) -> dict:
        return {"url": self.url("StructureDefinition", ext_id), **value}

    def bundle(self) -> dict:
        rng = self.rng
        protocol = get_protocol(_weighted(rng, PROTOCOL_WEIGHTS)[0])
        # Course length: a slight spread around the typical count, within the protocol's bounds.
        count = protocol.typical_sessions
        if protocol.max_sessions > protocol.min_sessions:
            count = max(protocol.min_sessions, min(protocol.max_sessions, count + rng.choice((-4, -2, 0, 0, 0, 2))))
        step_days = {"wk": 7 * protocol.interval, "mo": 30 * protocol.interval}[protocol.interval_unit]
        start = self.as_of - timedelta(days=rng.randint(-28, count * step_days + 60))
        weekday = rng.randint(0, 4)
        hour = rng.choice((9, 10, 11, 13, 14, 15, 16))

        # Patient and practitioner
        dx = _weighted(rng, DIAGNOSES)
        (given, gender), family = rng.choice(GIVEN), rng.choice(FAMILY)
        if dx[0] == "58703003":  # postpartum depression
            given, gender = rng.choice([g for g in GIVEN if g[1] == "female"])
        birth = date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28))
        patient = self.add({
            "resourceType": "Patient",
            "identifier": [{"system": self.url("sid", "demo-mrn"), "value": f"IPT{self.index:06d}-{rng.randint(1000, 9999)}"}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": gender,
            "birthDate": birth.isoformat(),
        })
        clinician = rng.randrange(len(CLINICIANS))
        practitioner_npi = npi(100_000_000 + clinician * 7919)
        first, last = CLINICIANS[clinician]
        practitioner = self.add({
            "resourceType": "Practitioner",
            "identifier": [{"system": NPI_SYSTEM, "value": practitioner_npi}],
            "active": True,
            "name": [{"family": last, "given": [first], "prefix": ["Dr."]}],
        }, if_none_exist=f"identifier={NPI_SYSTEM}|{practitioner_npi}")

        # Diagnosis and problem areas
        diagnosis = self.add({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": CONDITION_VER_STATUS, "code": "confirmed"}]},
            "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item",
                                      "display": "Problem List Item"}]}],
            "code": {"coding": [{"system": SNOMED, "code": dx[0], "display": dx[1]},
                                {"system": ICD10CM, "code": dx[2], "display": dx[3]}], "text": dx[1]},
            "subject": {"reference": patient},
            "onsetDateTime": (start - timedelta(days=rng.randint(30, 400))).isoformat(),
            "recordedDate": start.isoformat(),
        })
        n_areas = 2 if rng.random() < 0.3 else 1
        areas = []
        pool = list(PROBLEM_AREAS)
        for _ in range(n_areas):
            area = _weighted(rng, pool)
            pool.remove(area)
            areas.append(area)
        area_refs = []
        for area in areas:
            codings = [self.coding(CS_PROBLEM_AREA, area[0], area[1])]
            if area[2]:
                codings.append({"system": ICD10CM, "code": area[2], "display": area[3]})
            area_refs.append(self.add({
                "resourceType": "Condition",
                "meta": {"profile": [self.url("StructureDefinition", PROBLEM_AREA_PROFILE)]},
                "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": CONDITION_VER_STATUS, "code": "confirmed"}]},
                "category": [{"coding": [{"system": US_CORE_CONDITION_CATEGORY, "code": "health-concern",
                                          "display": "Health Concern"}]}],
                "code": {"coding": codings, "text": area[1]},
                "subject": {"reference": patient},
                "recordedDate": start.isoformat(),
            }))

        # Trajectory: responders fall to about a third of baseline, non-responders barely move.
        responder = rng.random() < 0.6
        baseline = rng.randint(10, 23)
        target = baseline * rng.uniform(0.15, 0.45) if responder else baseline * rng.uniform(0.7, 1.05)
        dropout_after = rng.randint(3, max(3, count - 3)) if rng.random() < 0.12 and count > 6 else None

        # Goals
        goal_specs = [("Reduce depressive symptoms: PHQ-9 below 5", diagnosis, None, True)]
        for area, ref in zip(areas, area_refs):
            text, mechanism = AREA_GOALS[area[0]]
            goal_specs.append((text, ref, mechanism, False))
        if rng.random() < 0.5:
            goal_specs.append(("Build a social support network", area_refs[0], "enhance-social-support", False))
        goal_urls = [f"urn:uuid:{self.new_id()}" for _ in goal_specs]

        plan = build_plan(protocol, patient, practitioner, start, count, weekday,
                          canonical_base=self.base, session_time=time(hour, 0), addresses=[diagnosis, *area_refs],
                          goals=goal_urls, new_id=self.new_id,
                          title=f"IPT for {dx[1].lower()}: {protocol.title.lower()}")
        plan_url, careplan = plan.careplan
        careplan["subject"]["display"] = f"{given} {family}"
        sr_url, service_request = plan.service_request

        # Sessions: what happened before as_of
        finished_sessions, phq9 = [], []
        stopped = False
        for number, (session_url, encounter) in enumerate(plan.sessions, start=1):
            session_day = date.fromisoformat(encounter["period"]["start"][:10])
            if session_day >= self.as_of:
                continue
            if dropout_after is not None and number > dropout_after:
                stopped = True
                encounter["status"] = "cancelled"
                encounter["extension"].append(self.ext(EXT_ATTENDANCE, valueCoding=self.coding(CS_ATTENDANCE, "cancelled-by-patient")))
                continue
            last = number == count
            if not last and number > 1 and rng.random() < 0.1:
                encounter["status"] = "cancelled"
                reason = rng.choice(("no-show", "no-show", "cancelled-by-patient", "cancelled-by-clinician"))
                encounter["extension"].append(self.ext(EXT_ATTENDANCE, valueCoding=self.coding(CS_ATTENDANCE, reason)))
                continue
            encounter["status"] = "finished"
            encounter["extension"].append(self.ext(EXT_ATTENDANCE, valueCoding=self.coding(CS_ATTENDANCE, "attended")))
            if rng.random() < 0.15 and protocol.format != "group":
                encounter["class"] = {"system": V3_ACT_CODE, "code": "VR", "display": "virtual"}
            phase = next(e["valueCoding"]["code"] for e in encounter["extension"] if e["url"].endswith("/ipt-phase"))
            techniques = ["interpersonal-inventory", "psychoeducation"] if phase == "initial" else \
                rng.sample(MIDDLE_TECHNIQUES, 2) if phase in ("middle", "maintenance") else ["clarification"]
            for technique in techniques:
                encounter["extension"].append(self.ext(EXT_TECHNIQUE, valueCoding=self.coding(CS_TECHNIQUE, technique)))
            if phase != "initial":
                encounter["extension"].append(self.ext(EXT_PROBLEM_AREA_FOCUS, valueReference={"reference": rng.choice(area_refs)}))
            finished_sessions.append(session_url)
            progress = (number - 1) / max(count - 1, 1)
            expected = baseline + (target - baseline) * (1 - (1 - progress) ** 1.6)
            score = 0 if number == 1 else rng.randint(-2, 2)
            value = baseline if number == 1 else max(0, min(27, round(expected + score)))
            phq9.append(self.phq9(patient, plan_url, session_url, encounter["period"]["start"], value))

        if stopped:
            for number, (_, encounter) in enumerate(plan.sessions, start=1):
                if number > dropout_after and encounter["status"] == "planned":
                    encounter["status"] = "cancelled"
                    encounter["extension"].append(self.ext(EXT_ATTENDANCE, valueCoding=self.coding(CS_ATTENDANCE, "cancelled-by-patient")))
        ended = all(date.fromisoformat(e["period"]["start"][:10]) < self.as_of for _, e in plan.sessions)
        if stopped:
            careplan["status"] = "revoked"
            service_request["status"] = "revoked"
        elif ended:
            careplan["status"] = "completed"
            service_request["status"] = "completed"
        if finished_sessions:
            careplan["activity"][0]["outcomeReference"] = [{"reference": u} for u in finished_sessions]

        # Goals, now the outcome is known
        latest = phq9[-1]["valueQuantity"]["value"] if phq9 else baseline
        for (text, addresses, mechanism, measured), goal_url in zip(goal_specs, goal_urls):
            if careplan["status"] == "completed":
                lifecycle = "completed"
                achieved = latest < 5 if measured else responder
                achievement = "achieved" if achieved else "not-achieved"
            elif careplan["status"] == "revoked":
                lifecycle, achievement = "cancelled", "not-achieved"
            else:
                lifecycle = "active"
                achievement = "in-progress" if len(phq9) < 3 else ("improving" if latest < baseline - 2 else "no-change")
            goal = {
                "resourceType": "Goal",
                "meta": {"profile": [self.url("StructureDefinition", GOAL_PROFILE)]},
                "lifecycleStatus": lifecycle,
                "achievementStatus": {"coding": [{"system": GOAL_ACHIEVEMENT, "code": achievement}]},
                "description": {"text": text},
                "subject": {"reference": patient},
                "startDate": start.isoformat(),
                "expressedBy": {"reference": practitioner},
                "addresses": [{"reference": addresses}],
            }
            extra = []
            if not measured:
                extra.append(self.ext(EXT_PROBLEM_AREA_FOCUS, valueReference={"reference": addresses}))
            if mechanism:
                extra.append(self.ext(EXT_MECHANISM, valueCoding=self.coding(CS_MECHANISM, mechanism)))
            if extra:
                goal = {"resourceType": "Goal", "meta": goal["meta"], "extension": extra,
                        **{k: v for k, v in goal.items() if k not in ("resourceType", "meta")}}
            if measured:
                goal["target"] = [{"measure": {"coding": [{"system": LOINC, "code": LOINC_PHQ9,
                                                           "display": "PHQ-9 total score"}]},
                                   "detailQuantity": {"value": 5, "comparator": "<", "unit": "{score}",
                                                      "system": UCUM, "code": "{score}"},
                                   "dueDate": careplan["period"]["end"]}]
            self.add(goal, goal_url)

        self.add(careplan, plan_url)
        self.add(service_request, sr_url)
        for session_url, encounter in plan.sessions:
            self.add(encounter, session_url)
        for observation in phq9:
            self.add(observation)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
        careplan["text"] = self._narrative(bundle, plan_url)
        return bundle

    def phq9(self, patient: str, plan: str, session: str, when: str, value: int) -> dict:
        return {
            "resourceType": "Observation",
            "meta": {"profile": [self.url("StructureDefinition", SCORE_PROFILE)]},
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey", "display": "Survey"}]}],
            "code": {"coding": [{"system": LOINC, "code": LOINC_PHQ9,
                                 "display": "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"}],
                     "text": "PHQ-9 total score"},
            "subject": {"reference": patient},
            "basedOn": [{"reference": plan}],
            "encounter": {"reference": session},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "{score}", "system": UCUM, "code": "{score}"},
        }

    def _narrative(self, bundle: dict, plan_url: str) -> dict:
        stored = resources_from_transaction(bundle)
        plan_id = plan_url[len("urn:uuid:"):]
        by_type: dict[str, list[dict]] = {}
        for r in stored:
            by_type.setdefault(r["resourceType"], []).append(r)
        careplan = next(r for r in by_type["CarePlan"] if r["id"] == plan_id)
        progress = compute_progress(careplan, course_requests=by_type.get("ServiceRequest", []),
                                    sessions=by_type.get("Encounter", []), scores=by_type.get("Observation", []),
                                    goals=by_type.get("Goal", []),
                                    conditions=[c for c in by_type.get("Condition", [])])
        return careplan_narrative(careplan, progress)
