"""The IPT protocols as Python data, read from the protocol PlanDefinitions (the single source).

Each PlanDefinition has one course action whose timingTiming.repeat gives the minimum (count), the
maximum (countMax), the cadence (period, periodUnit), the session length (duration, durationMax) and,
for courses spread over months, boundsDuration; the ipt-typical-session-count extension gives the
default count; sub-actions are the phases, in order, coded with the IPT phase code system, carrying the
ipt-phase-session-count range when their length is fixed by the protocol (the middle phase takes the
rest).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .canonical import (
    CPT, CS_FORMAT, CS_PHASE, DEFAULT_CANONICAL_BASE, EXT_FORMAT, EXT_PHASE_SESSION_COUNT, EXT_TYPICAL_SESSION_COUNT,
    SNOMED, canonical, extension_value, ipt_coding, is_ipt_url,
)
from .conformance_loader import load_conformance

PHASE_ORDER = {"initial": 0, "middle": 1, "termination": 2, "maintenance": 3}


@dataclass(frozen=True, slots=True)
class Protocol:
    id: str
    title: str
    format: str
    min_sessions: int
    typical_sessions: int
    max_sessions: int
    interval: int                 # one session every `interval` `interval_unit`
    interval_unit: str            # "wk" | "mo"
    session_minutes: int
    session_minutes_max: int
    phases: tuple[str, ...]
    initial_sessions: tuple[int, int] | None
    termination_sessions: tuple[int, int] | None
    course_months: int | None     # "over about five months"
    snomed: str
    cpt: str

    def url(self, canonical_base: str = DEFAULT_CANONICAL_BASE) -> str:
        return canonical(canonical_base, "PlanDefinition", self.id)

    @property
    def is_maintenance(self) -> bool:
        return self.phases == ("maintenance",)

    def phase_lengths(self, total: int) -> tuple[int, int, int]:
        """(initial, middle, termination) session counts for a course of `total` sessions.

        A phase with a range takes about a fifth of the course, clamped to its range; if the course
        is too short for both fixed phases, termination gives way first, then the initial phase.
        """
        if self.is_maintenance or total <= 0:
            return (0, max(total, 0), 0)
        fifth = math.floor(total / 5 + 0.5)
        initial = _clamp(fifth, self.initial_sessions) if self.initial_sessions else 0
        termination = _clamp(fifth, self.termination_sessions) if self.termination_sessions else 0
        initial = min(initial, total)
        termination = min(termination, total - initial)
        return (initial, total - initial - termination, termination)

    def phase_for(self, session_number: int, total: int | None = None) -> str:
        """The phase session `session_number` of a course of `total` (default typical) sessions is in.

        Sessions beyond the planned total extend the termination phase.
        """
        if self.is_maintenance:
            return "maintenance"
        total = total or self.typical_sessions
        initial, _middle, termination = self.phase_lengths(total)
        if session_number <= initial:
            return "initial"
        if session_number > total - termination:
            return "termination"
        return "middle"

    def initial_phase_end(self, total: int | None = None) -> int:
        return self.phase_lengths(total or self.typical_sessions)[0]


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


def protocol_from_plan_definition(pd: dict) -> Protocol:
    course = pd["action"][0]
    repeat = course["timingTiming"]["repeat"]
    phases: list[str] = []
    ranges: dict[str, tuple[int, int]] = {}
    for action in course.get("action", []):
        phase = next((c["code"] for cc in action.get("code", []) for c in cc.get("coding", [])
                      if is_ipt_url(c.get("system"), "CodeSystem", CS_PHASE)), None)
        if phase is None:
            continue
        phases.append(phase)
        rng = extension_value(action, EXT_PHASE_SESSION_COUNT, "valueRange")
        if rng:
            ranges[phase] = (int(rng["low"]["value"]), int(rng["high"]["value"]))
    codes = [c for cc in course.get("code", []) for c in cc.get("coding", [])]
    fmt = (extension_value(pd, EXT_FORMAT, "valueCoding") or {}).get("code", "individual")
    bounds = repeat.get("boundsDuration")
    return Protocol(
        id=pd["id"], title=pd.get("title", pd["id"]), format=fmt,
        min_sessions=int(repeat.get("count", 1)),
        typical_sessions=int(extension_value(course, EXT_TYPICAL_SESSION_COUNT, "valuePositiveInt") or repeat["count"]),
        max_sessions=int(repeat.get("countMax", repeat.get("count", 1))),
        interval=int(repeat.get("period", 1)), interval_unit=repeat.get("periodUnit", "wk"),
        session_minutes=int(repeat.get("duration", 50)),
        session_minutes_max=int(repeat.get("durationMax", repeat.get("duration", 50))),
        phases=tuple(phases), initial_sessions=ranges.get("initial"), termination_sessions=ranges.get("termination"),
        course_months=int(bounds["value"]) if bounds and bounds.get("code") == "mo" else None,
        snomed=next((c["code"] for c in codes if c.get("system") == SNOMED), "443730003"),
        cpt=next((c["code"] for c in codes if c.get("system") == CPT), "90834"),
    )


@lru_cache(maxsize=1)
def _protocols() -> dict[str, Protocol]:
    return {pd["id"]: protocol_from_plan_definition(pd)
            for pd in load_conformance() if pd["resourceType"] == "PlanDefinition"}


PROTOCOL_IDS = ("ipt-standard-individual", "ipt-who-group", "ipt-dynamic-interpersonal", "ipt-brief", "ipt-maintenance")
DEFAULT_PROTOCOL_ID = "ipt-standard-individual"


def all_protocols() -> list[Protocol]:
    return [_protocols()[i] for i in PROTOCOL_IDS]


def get_protocol(id_or_url: str) -> Protocol | None:
    """By PlanDefinition id, or by canonical URL under any base (with or without |version)."""
    key = id_or_url.split("|", 1)[0].rstrip("/")
    if "/" in key:
        if "/PlanDefinition/" not in key:
            return None
        key = key.rsplit("/", 1)[-1]
    return _protocols().get(key)


def protocol_for_careplan(careplan: dict | None) -> Protocol:
    """The protocol a CarePlan instantiates; standard individual IPT when it names none we know."""
    for url in (careplan or {}).get("instantiatesCanonical") or []:
        protocol = get_protocol(url)
        if protocol:
            return protocol
    return _protocols()[DEFAULT_PROTOCOL_ID]


def careplan_format(careplan: dict | None) -> str | None:
    coding = extension_value(careplan, EXT_FORMAT, "valueCoding") or {}
    return coding.get("code") if is_ipt_url(coding.get("system"), "CodeSystem", CS_FORMAT) else None


def phase_coding(phase: str, canonical_base: str = DEFAULT_CANONICAL_BASE) -> dict:
    displays = {"initial": "Initial phase", "middle": "Middle phase", "termination": "Termination phase",
                "maintenance": "Maintenance phase"}
    return {"system": canonical(canonical_base, "CodeSystem", CS_PHASE), "code": phase, "display": displays[phase]}


__all__ = [
    "PHASE_ORDER", "Protocol", "PROTOCOL_IDS", "DEFAULT_PROTOCOL_ID", "all_protocols", "get_protocol",
    "protocol_for_careplan", "protocol_from_plan_definition", "careplan_format", "phase_coding", "ipt_coding",
]
