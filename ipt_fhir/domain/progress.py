"""Progress of one IPT course, as a small read-model row kept up to date one resource at a time.

The row holds a compact entry per session, PHQ-9 score, goal and problem area of the plan (a course
has tens of them, so the row stays a few kilobytes); every figure ($ipt-progress, the narrative) is
derived from the row alone. A write changes one entry: `apply_change(row, resource)`, with the
resource's new version (or its last version and deleted=True). Nothing is recomputed from the store.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable

from ..fhir.dates import parse_fhir_datetime_range
from .canonical import (
    CS_PHASE, CS_PROBLEM_AREA, DEFAULT_CANONICAL_BASE, LOINC, LOINC_PHQ9, SCORE_RANGES, canonical, claims_profile,
    CAREPLAN_PROFILE, ipt_coding, reference, same_subject, session_attendance, session_number, session_phase,
    split_reference, subject_of,
)
from .lookup import ResourceLookup
from .protocols import get_protocol, protocol_for_careplan

ATTENDED = frozenset({"finished"})
MISSED = frozenset({"cancelled"})
CANCELLED_BY_CLINICIAN = "cancelled-by-clinician"  # CodeSystem ipt-attendance
UPCOMING = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave"})
FINAL_OBSERVATION = frozenset({"final", "amended", "corrected"})
# The row's layout; a row of an older one is computed again from the store when next read or written
# (2: each session's course, and the courses closed, for sessionsPlanned).
ROW_VERSION = 2
CLOSED_COURSE = frozenset({"completed", "revoked"})  # request-status: no further sessions under it


@dataclass(slots=True)
class SessionEntry:
    number: int | None
    status: str
    start: str | None
    phase: str | None = None
    attendance: str | None = None
    course: str | None = None  # the ServiceRequest it is based on


@dataclass(slots=True)
class ScoreEntry:
    date: str
    value: float


@dataclass(slots=True)
class GoalEntry:
    description: str | None
    lifecycle: str | None
    achievement: str | None = None


@dataclass(slots=True)
class ProblemArea:
    code: str
    display: str | None = None


@dataclass(slots=True)
class PlanProgress:
    careplan_id: str
    subject: str | None = None
    status: str | None = None
    title: str | None = None
    protocol: str | None = None            # PlanDefinition id of the protocol
    period_start: str | None = None
    period_end: str | None = None
    addresses: list[str] = field(default_factory=list)       # CarePlan.addresses references
    goal_refs: list[str] = field(default_factory=list)       # CarePlan.goal references
    courses: dict[str, int] = field(default_factory=dict)    # ServiceRequest ref -> sessions ordered
    closed_courses: list[str] = field(default_factory=list)  # those completed or revoked
    problem_areas: dict[str, ProblemArea] = field(default_factory=dict)  # Condition ref -> area
    sessions: dict[str, SessionEntry] = field(default_factory=dict)      # Encounter ref -> entry
    phq9: dict[str, ScoreEntry] = field(default_factory=dict)            # Observation ref -> score
    goals: dict[str, GoalEntry] = field(default_factory=dict)            # Goal ref -> entry

    # ---- derived figures ---------------------------------------------------------------------
    @property
    def careplan_ref(self) -> str:
        return reference("CarePlan", self.careplan_id)

    @property
    def sessions_planned(self) -> int:
        """The sessions the plan's courses order; a completed or revoked course ("no further activity
        should occur", request-status) plans no more than the sessions held or missed under it."""
        if self.courses:
            return sum(self._sessions_used(ref) if ref in self.closed_courses else ordered
                       for ref, ordered in self.courses.items())
        protocol = get_protocol(self.protocol or "")
        return protocol.typical_sessions if protocol else 0

    def _sessions_used(self, course: str) -> int:
        return sum(1 for s in self.sessions.values() if s.course == course and (s.status in ATTENDED or self._missed(s)))

    @staticmethod
    def _missed(session: SessionEntry) -> bool:
        return session.status in MISSED and session.attendance != CANCELLED_BY_CLINICIAN

    @property
    def sessions_attended(self) -> int:
        return sum(1 for s in self.sessions.values() if s.status in ATTENDED)

    @property
    def sessions_missed(self) -> int:
        """No-shows and patient cancellations: a session the clinician cancelled was not the patient's to
        attend (it is usually held again under its number)."""
        return sum(1 for s in self.sessions.values() if self._missed(s))

    @property
    def ended(self) -> bool:
        """The plan is over: it plans no further sessions, whatever sessions it still lists as planned."""
        return self.status in ("completed", "revoked", "entered-in-error")

    @property
    def sessions_remaining(self) -> int:
        if self.ended:
            return 0
        return max(self.sessions_planned - self.sessions_attended - self.sessions_missed, 0)

    @property
    def current_phase(self) -> str:
        protocol = protocol_for_careplan({"instantiatesCanonical": [self.protocol]} if self.protocol else None)
        held = [s for s in self.sessions.values() if s.status in ATTENDED or s.status == "in-progress"]
        if not held:
            return "maintenance" if protocol.is_maintenance else "initial"
        last = max(held, key=lambda s: (s.number or 0, s.start or ""))
        return last.phase or protocol.phase_for(last.number or 1, self.sessions_planned)

    @property
    def next_session(self) -> tuple[str, SessionEntry] | None:
        if self.ended:  # as sessionsRemaining says: none
            return None
        upcoming = [(ref, s) for ref, s in self.sessions.items() if s.status == "planned" and s.start]
        return min(upcoming, key=lambda item: (moment_key(item[1].start), item[1].number or 0)) if upcoming else None

    def _ordered_scores(self) -> list[ScoreEntry]:
        return sorted(self.phq9.values(), key=lambda s: moment_key(s.date))

    @property
    def phq9_baseline(self) -> ScoreEntry | None:
        scores = self._ordered_scores()
        return scores[0] if scores else None

    @property
    def phq9_latest(self) -> ScoreEntry | None:
        scores = self._ordered_scores()
        return scores[-1] if scores else None

    @property
    def phq9_change(self) -> float | None:
        if len(self.phq9) < 2:
            return None
        return self.phq9_latest.value - self.phq9_baseline.value

    @property
    def phq9_response(self) -> bool | None:
        """At least a 50 % drop from baseline (None until there is a follow-up score)."""
        if len(self.phq9) < 2:
            return None
        baseline = self.phq9_baseline.value
        return baseline > 0 and (baseline - self.phq9_latest.value) >= 0.5 * baseline

    @property
    def phq9_remission(self) -> bool | None:
        """Latest total below 5 (None until there is a follow-up score)."""
        if len(self.phq9) < 2:
            return None
        return self.phq9_latest.value < 5

    # ---- serialisation -----------------------------------------------------------------------
    def to_row(self) -> dict:
        row = asdict(self)
        row["v"] = ROW_VERSION
        return row

    @classmethod
    def from_row(cls, row: dict) -> "PlanProgress":
        row = {k: v for k, v in row.items() if k != "v"}
        return cls(
            **{k: v for k, v in row.items() if k not in ("problem_areas", "sessions", "phq9", "goals")},
            problem_areas={k: ProblemArea(**v) for k, v in row.get("problem_areas", {}).items()},
            sessions={k: SessionEntry(**v) for k, v in row.get("sessions", {}).items()},
            phq9={k: ScoreEntry(**v) for k, v in row.get("phq9", {}).items()},
            goals={k: GoalEntry(**v) for k, v in row.get("goals", {}).items()},
        )

    def to_parameters(self, canonical_base: str = DEFAULT_CANONICAL_BASE) -> dict:
        """The $ipt-progress result (a Parameters resource)."""
        params: list[dict] = [
            {"name": "carePlan", "valueReference": {"reference": self.careplan_ref}},
        ]
        if self.subject:
            params.append({"name": "subject", "valueReference": {"reference": self.subject}})
        if self.status:
            params.append({"name": "status", "valueCode": self.status})
        if self.protocol:
            params.append({"name": "protocol", "valueCanonical": canonical(canonical_base, "PlanDefinition", self.protocol)})
        params += [
            {"name": "sessionsPlanned", "valueInteger": self.sessions_planned},
            {"name": "sessionsAttended", "valueInteger": self.sessions_attended},
            {"name": "sessionsMissed", "valueInteger": self.sessions_missed},
            {"name": "sessionsRemaining", "valueInteger": self.sessions_remaining},
            {"name": "currentPhase", "valueCoding": {"system": canonical(canonical_base, "CodeSystem", CS_PHASE),
                                                     "code": self.current_phase}},
        ]
        for ref, area in sorted(self.problem_areas.items()):
            coding = {"system": canonical(canonical_base, "CodeSystem", CS_PROBLEM_AREA), "code": area.code}
            if area.display:
                coding["display"] = area.display
            params.append({"name": "problemArea", "part": [
                {"name": "condition", "valueReference": {"reference": ref}},
                {"name": "code", "valueCoding": coding}]})
        for name, score in (("phq9Baseline", self.phq9_baseline), ("phq9Latest", self.phq9_latest)):
            if score is not None:
                params.append({"name": name, "part": [
                    {"name": "value", **_number(score.value)},
                    {"name": "date", **_date_value(score.date)}]})
        if self.phq9_change is not None:
            params.append({"name": "phq9Change", **_number(self.phq9_change)})
            params.append({"name": "phq9Response", "valueBoolean": bool(self.phq9_response)})
            params.append({"name": "phq9Remission", "valueBoolean": bool(self.phq9_remission)})
        for ref, goal in sorted(self.goals.items()):
            part = [{"name": "goal", "valueReference": {"reference": ref}}]
            if goal.lifecycle:
                part.append({"name": "lifecycleStatus", "valueCode": goal.lifecycle})
            if goal.achievement:
                part.append({"name": "achievementStatus", "valueCode": goal.achievement})
            if goal.description:
                part.append({"name": "description", "valueString": goal.description})
            params.append({"name": "goal", "part": part})
        nxt = self.next_session
        if nxt:
            ref, entry = nxt
            part = [{"name": "encounter", "valueReference": {"reference": ref}},
                    {"name": "start", **_date_value(entry.start)}]
            if entry.number is not None:
                part.append({"name": "sessionNumber", "valueInteger": entry.number})
            params.append({"name": "nextSession", "part": part})
        return {"resourceType": "Parameters", "parameter": params}


def _number(value: float) -> dict:
    """A decimal output parameter (OperationDefinition ipt-progress: every PHQ-9 figure is declared
    decimal, so a whole number is a valueDecimal too, written without a fraction)."""
    return {"valueDecimal": int(value) if float(value).is_integer() else value}


def _date_value(text: str | None) -> dict:
    """A dateTime output parameter: a date alone ("2025-03-03") is a valid dateTime, so it stays one."""
    return {"valueDateTime": text}


# ---- incremental update ------------------------------------------------------------------------
def new_progress(careplan: dict) -> PlanProgress:
    progress = PlanProgress(careplan_id=careplan["id"])
    _apply_careplan(progress, careplan, deleted=False, lookup=None)
    return progress


def apply_change(progress: PlanProgress, resource: dict, *, deleted: bool = False,
                 lookup: ResourceLookup | None = None) -> PlanProgress:
    """Fold one created/updated (or deleted: pass its last version) resource into the row, in place.

    `lookup` is only needed for CarePlan changes that add problem-area Conditions or Goals the row
    has not seen (each is read once). Returns the same row for chaining.
    """
    rtype = resource.get("resourceType")
    ref = reference(rtype, resource["id"]) if resource.get("id") else None
    if rtype == "CarePlan":
        if resource.get("id") == progress.careplan_id:
            _apply_careplan(progress, resource, deleted=deleted, lookup=lookup)
    elif ref is None:
        pass
    elif rtype in ("ServiceRequest", "Encounter", "Observation") and not _about_plan_patient(progress, resource):
        # Linked to the plan but about another patient: the rules refuse that (rules._profile_by_link), yet
        # a record stored before they did may be there, and another patient's are never this course's progress.
        progress.courses.pop(ref, None)
        progress.sessions.pop(ref, None)
        progress.phq9.pop(ref, None)
    elif rtype == "ServiceRequest":
        closed = [c for c in progress.closed_courses if c != ref]
        if deleted or resource.get("status") == "entered-in-error":
            progress.courses.pop(ref, None)
        else:
            progress.courses[ref] = ordered_sessions(resource)
            if resource.get("status") in CLOSED_COURSE:
                closed.append(ref)
        progress.closed_courses = sorted(closed)  # the same row whatever order the courses came in
    elif rtype == "Encounter":
        if deleted or resource.get("status") == "entered-in-error":
            progress.sessions.pop(ref, None)
        else:
            progress.sessions[ref] = _session_entry(resource, progress.courses)
    elif rtype == "Observation":
        entry = None if deleted else _phq9_entry(resource)
        if entry is None:
            progress.phq9.pop(ref, None)
        else:
            progress.phq9[ref] = entry
    elif rtype == "Goal":
        if deleted or resource.get("lifecycleStatus") == "entered-in-error" or ref not in progress.goal_refs:
            progress.goals.pop(ref, None)
        else:
            progress.goals[ref] = _goal_entry(resource)
    elif rtype == "Condition":
        area = None if deleted or ref not in progress.addresses else _problem_area(resource)
        if area is None:
            progress.problem_areas.pop(ref, None)
        else:
            progress.problem_areas[ref] = area
    return progress


def compute_progress(careplan: dict, *, course_requests: Iterable[dict] = (), sessions: Iterable[dict] = (),
                     scores: Iterable[dict] = (), goals: Iterable[dict] = (), conditions: Iterable[dict] = ()) -> PlanProgress:
    """The whole row from the plan's resources (reindexing, tests); equal to folding them in one by one."""
    progress = new_progress(careplan)
    for resource in [*conditions, *goals, *course_requests, *sessions, *scores]:
        apply_change(progress, resource)
    return progress


def plans_affected(resource: dict, lookup: ResourceLookup) -> list[str]:
    """Ids of the IPT CarePlans whose progress row a change to `resource` touches."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    candidates: list[tuple[str, str]] = []
    if rtype == "CarePlan" and rid:
        return [rid] if claims_profile(resource, CAREPLAN_PROFILE) else []
    if rtype == "ServiceRequest":
        candidates = _refs(resource.get("basedOn"), "CarePlan")
    elif rtype == "Encounter":
        candidates = _plans_of_courses(resource, lookup)
    elif rtype == "Observation":
        candidates = plans_named(resource)
        if not candidates:  # a score of a course, or of a session: that course's plan
            candidates = _plans_of_courses(resource, lookup)
            enc = split_reference(resource.get("encounter"))
            encounter = lookup.read("Encounter", enc[1]) if enc and enc[0] == "Encounter" else None
            if encounter:
                candidates += _plans_of_courses(encounter, lookup)
    elif rtype in ("Goal", "Condition") and rid:
        param = "goal" if rtype == "Goal" else "condition"
        return sorted({p["id"] for p in lookup.search("CarePlan", [(param, reference(rtype, rid))])
                       if claims_profile(p, CAREPLAN_PROFILE)})
    out: list[str] = []
    for _, plan_id in candidates:
        plan = lookup.read("CarePlan", plan_id)
        if plan and claims_profile(plan, CAREPLAN_PROFILE) and plan_id not in out:
            out.append(plan_id)
    return out


def plans_named(resource: dict) -> list[tuple[str, str]]:
    """The CarePlans a resource's basedOn names. A score naming none counts for the plan of the course
    ServiceRequest its basedOn names (the score profile allows that) and for the plan of its session
    (`encounter`): plans_affected when it is written, and the full computation from the store alike."""
    return _refs(resource.get("basedOn"), "CarePlan")


def _plans_of_courses(resource: dict, lookup: ResourceLookup) -> list[tuple[str, str]]:
    """The CarePlans the ServiceRequests (courses) a session's or score's basedOn names are based on."""
    out: list[tuple[str, str]] = []
    for _, sr_id in _refs(resource.get("basedOn"), "ServiceRequest"):
        sr = lookup.read("ServiceRequest", sr_id)
        if sr:
            out += _refs(sr.get("basedOn"), "CarePlan")
    return out


def _refs(refs: Any, rtype: str) -> list[tuple[str, str]]:
    out = []
    for r in refs or []:
        parsed = split_reference(r)
        if parsed and parsed[0] == rtype:
            out.append(parsed)
    return out


def _apply_careplan(progress: PlanProgress, careplan: dict, *, deleted: bool, lookup: ResourceLookup | None) -> None:
    progress.status = "entered-in-error" if deleted else careplan.get("status")
    progress.subject = (careplan.get("subject") or {}).get("reference")
    progress.title = careplan.get("title")
    progress.protocol = protocol_for_careplan(careplan).id
    period = careplan.get("period") or {}
    progress.period_start, progress.period_end = period.get("start"), period.get("end")
    progress.addresses = [a["reference"] for a in careplan.get("addresses") or [] if a.get("reference")]
    progress.goal_refs = [g["reference"] for g in careplan.get("goal") or [] if g.get("reference")]
    progress.problem_areas = {k: v for k, v in progress.problem_areas.items() if k in progress.addresses}
    progress.goals = {k: v for k, v in progress.goals.items() if k in progress.goal_refs}
    if lookup is None:
        return
    for ref in progress.addresses:
        parsed = split_reference(ref)
        if ref not in progress.problem_areas and parsed and parsed[0] == "Condition":
            condition = lookup.read("Condition", parsed[1])
            area = _problem_area(condition) if condition else None
            if area:
                progress.problem_areas[ref] = area
    for ref in progress.goal_refs:
        parsed = split_reference(ref)
        if ref not in progress.goals and parsed and parsed[0] == "Goal":
            goal = lookup.read("Goal", parsed[1])
            if goal and goal.get("lifecycleStatus") != "entered-in-error":
                progress.goals[ref] = _goal_entry(goal)


def planned_sessions(courses: Iterable[dict], sessions: Iterable[dict]) -> int:
    """PlanProgress.sessions_planned of a plan's courses and sessions as resources (the rules check a write
    against them before the plan's row is updated); 0 when no course is left to order any."""
    progress = PlanProgress(careplan_id="")
    for course in courses:
        if course.get("status") != "entered-in-error":
            progress.courses[reference("ServiceRequest", course["id"])] = ordered_sessions(course)
            if course.get("status") in CLOSED_COURSE:
                progress.closed_courses.append(reference("ServiceRequest", course["id"]))
    if not progress.courses:
        return 0
    for session in sessions:
        if session.get("status") != "entered-in-error":
            progress.sessions[reference("Encounter", session["id"])] = _session_entry(session, progress.courses)
    return progress.sessions_planned


def ordered_sessions(sr: dict) -> int:
    quantity = sr.get("quantityQuantity") or {}
    if isinstance(quantity.get("value"), (int, float)):
        return int(quantity["value"])
    count = (((sr.get("occurrenceTiming") or {}).get("repeat")) or {}).get("count")
    return int(count) if isinstance(count, int) else 0


def _session_entry(encounter: dict, plan_courses: Iterable[str] = ()) -> SessionEntry:
    """`plan_courses`: the plan's course references; the session is counted under the first of them its
    basedOn names (it may name a referral too), else under the first ServiceRequest it names."""
    courses = [reference(*r) for r in _refs(encounter.get("basedOn"), "ServiceRequest")]
    course = next((c for c in courses if c in plan_courses), courses[0] if courses else None)
    return SessionEntry(
        number=session_number(encounter),
        status=encounter.get("status", "unknown"),
        start=(encounter.get("period") or {}).get("start"),
        phase=session_phase(encounter),
        attendance=session_attendance(encounter),
        course=course,
    )


def current_row(row: dict | None) -> dict | None:
    """A stored row, or None when there is none or its layout is older than ROW_VERSION (the caller then
    computes the plan's progress from the store, as for a plan without a row)."""
    return row if row is not None and row.get("v") == ROW_VERSION else None


def observation_score(observation: dict) -> float | None:
    if "valueQuantity" in observation:
        value = (observation["valueQuantity"] or {}).get("value")
    else:
        value = observation.get("valueInteger")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def observation_date(observation: dict) -> str | None:
    return observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get("start") \
        or observation.get("effectiveInstant")


def is_phq9(observation: dict) -> bool:
    return any(c.get("system") == LOINC and c.get("code") == LOINC_PHQ9
               for c in (observation.get("code") or {}).get("coding") or [])


def _phq9_entry(observation: dict) -> ScoreEntry | None:
    if not is_phq9(observation) or observation.get("status") not in FINAL_OBSERVATION:
        return None
    value, when = observation_score(observation), observation_date(observation)
    lowest, highest = SCORE_RANGES[LOINC_PHQ9]  # a total outside it is no PHQ-9 score
    if value is None or when is None or not lowest <= value <= highest:
        return None
    return ScoreEntry(date=when, value=value)


def _about_plan_patient(progress: PlanProgress, resource: dict) -> bool:
    return same_subject(subject_of(resource), progress.subject)


def _goal_entry(goal: dict) -> GoalEntry:
    achievement = next((c.get("code") for c in (goal.get("achievementStatus") or {}).get("coding") or []), None)
    return GoalEntry(description=(goal.get("description") or {}).get("text"),
                     lifecycle=goal.get("lifecycleStatus"), achievement=achievement)


def _problem_area(condition: dict) -> ProblemArea | None:
    if _condition_in_error(condition):
        return None
    coding = ipt_coding(condition.get("code"), CS_PROBLEM_AREA)
    return ProblemArea(code=coding["code"], display=coding.get("display")) if coding and coding.get("code") else None


def _condition_in_error(condition: dict) -> bool:
    return any(c.get("code") == "entered-in-error"
               for c in (condition.get("verificationStatus") or {}).get("coding") or [])


def as_date(text: str | None) -> date | None:
    """The calendar date of a FHIR date/dateTime string (its local date, as written)."""
    if not text or len(text) < 10:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def moment_key(text: str | None) -> tuple:
    """A sort key putting FHIR date/dateTime strings in time order: the start of each one's UTC range
    (fhir.dates), so instants compare whatever offset they were written with (text order put 01:00+05:00
    after 22:00Z of the previous day) and 2025-03 counts from its first instant; text that does not parse
    sorts last, by text."""
    try:
        return (0, parse_fhir_datetime_range(text)[0], text)
    except (ValueError, AttributeError):  # malformed, or None
        return (1, _NO_MOMENT, text or "")


_NO_MOMENT = datetime.min.replace(tzinfo=timezone.utc)
