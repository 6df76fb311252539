"""Cross-resource IPT rules, checked on create, update, patch and within transactions.

`check(resource, previous, lookup)` returns OperationOutcome issues for a resource that claims an IPT
profile, or that $ipt-progress reads as an IPT plan's session or PHQ-9 score whatever it claims
(_profile_by_link; any other resource: no issues). Errors mean 422; warnings go back with the success. Whether
something is an error or a warning follows one line: breaking the data model or the protocol's hard
limits is an error, a departure a clinician may rightly choose is a warning.

Rules by resource (path prefixes name the element at fault):
  CarePlan        status transitions; one subject with its goals, conditions, courses and sessions;
                  1-2 problem areas (more: warning; none once a post-initial session is held: error);
                  a completed plan has a held termination-phase session; period covers the sessions;
                  entered-in-error with live sessions: warning; another open IPT plan of the
                  patient: warning.
  ServiceRequest  based on an existing CarePlan with the same subject; none added to a closed plan;
                  sessions ordered within the protocol maximum (below its minimum: warning).
  Encounter       based on an existing course; same subject; attendance agreeing with the status;
                  no new upcoming session on a closed plan or course; within the plan period; session
                  numbers unique and increasing with date;
                  count vs protocol maximum (error) and vs planned (warning); phase known to the
                  protocol, never going backwards (error), as the protocol expects (warning); a
                  problem area recorded by the end of the initial phase; status transitions.
  Goal            addresses a problem area or a diagnosis of the same subject; plans holding it share
                  the subject.
  Observation     score a whole number within the instrument's range (or absent, with a dataAbsentReason:
                  the profile's ipt-score-1), without a unit of measure; same subject as its plan and session; not dated in the
                  future; its session held and near its date (warnings).
  Condition       plans addressing a problem area share its subject.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Iterable

from ..fhir.dates import parse_fhir_datetime_range
from ..fhir.outcome import Issue, error, warning
from .canonical import (
    CAREPLAN_PROFILE, COURSE_PROFILE, CPT, CPT_DISPLAY, CS_PROBLEM_AREA, EXT_ATTENDANCE, EXT_PHASE, EXT_PROBLEM_AREA_FOCUS,
    EXT_SESSION_NUMBER, GOAL_ACHIEVEMENT, GOAL_ACHIEVEMENT_CODES, GOAL_PROFILE, PROBLEM_AREA_PROFILE, SCORE_PROFILE,
    SCORE_RANGES, SESSION_PROFILE, UCUM, claimed_ipt_profile, claims_profile, extensions, ipt_coding, reference,
    same_reference, same_subject, session_attendance, session_number, session_phase, split_reference, subject_of,
)
from . import progress
from .lookup import ResourceLookup
from .progress import as_date, is_phq9, observation_date, observation_score, plans_affected
from .protocols import PHASE_ORDER, Protocol, get_protocol, protocol_for_careplan

CLOSED_PLAN = frozenset({"completed", "revoked", "entered-in-error"})
WITHDRAWN = frozenset({"entered-in-error", "cancelled"})
CLOSED_COURSE = progress.CLOSED_COURSE | {"entered-in-error"}  # ended, or never valid: no new session on it
NOT_COUNTED = frozenset({"cancelled", "entered-in-error"})
HELD = frozenset({"in-progress", "finished"})
# The statuses each attendance (CodeSystem ipt-attendance) agrees with: a session attended is held (or
# being held); a no-show or a cancellation is a cancelled Encounter (R4 Encounter has no no-show status).
ATTENDANCE_STATUSES = {"attended": HELD, "no-show": frozenset({"cancelled"}),
                       "cancelled-by-patient": frozenset({"cancelled"}),
                       "cancelled-by-clinician": frozenset({"cancelled"})}
# A session that has not happened yet: the only kind a closed plan or course cannot take. Recording a
# session already held (documentation lag, importing a finished course) stays possible.
UPCOMING = frozenset({"planned", "arrived", "triaged", "in-progress", "onleave"})
DIAGNOSIS_CATEGORIES = frozenset({"problem-list-item", "encounter-diagnosis"})

# previous status -> statuses it may not move to (anything else is allowed)
CAREPLAN_FORBIDDEN = {
    "completed": {"draft", "on-hold", "revoked"},
    "revoked": {"draft", "active", "on-hold", "completed"},
    "entered-in-error": {"draft", "active", "on-hold", "completed", "revoked", "unknown"},
    "active": {"draft"},
    "on-hold": {"draft"},
}
CAREPLAN_WARN = {"completed": {"active"}}
REQUEST_FORBIDDEN = CAREPLAN_FORBIDDEN
ENCOUNTER_FORBIDDEN = {
    "finished": {"planned", "arrived", "triaged", "in-progress", "onleave", "cancelled"},
    "entered-in-error": {"planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "unknown"},
}
ENCOUNTER_WARN = {"cancelled": {"arrived", "triaged", "in-progress", "finished"}}


def check(resource: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    """Issues for `resource` (new version) given its `previous` version (None on create)."""
    profile = claimed_ipt_profile(resource)
    if profile is None:
        if resource.get("status") in WITHDRAWN:  # a record held to the rules by its links only (stored,
            return []                             # maybe, before they were) may always be withdrawn
        profile = _profile_by_link(resource, lookup)
    if profile is None:
        return []
    checker = _CHECKERS.get((profile, resource.get("resourceType")))
    return checker(resource, previous, lookup) if checker else []


def _may_be_linked(resource: dict) -> bool:
    """Whether `resource` could be an IPT course, session or score without claiming the profile
    (_profile_by_link), told without a lookup."""
    rtype = resource.get("resourceType")
    if rtype in ("ServiceRequest", "Encounter"):
        return bool(resource.get("basedOn"))
    return rtype == "Observation" and bool(resource.get("basedOn") or resource.get("encounter")) and is_phq9(resource)


_BY_LINK = {"ServiceRequest": COURSE_PROFILE, "Encounter": SESSION_PROFILE, "Observation": SCORE_PROFILE}


def _profile_by_link(resource: dict, lookup: ResourceLookup) -> str | None:
    """The profile whose rules hold for a resource $ipt-progress reads as part of an IPT plan, whatever it
    claims: a ServiceRequest based on the plan is one of its courses (sessions within the protocol's
    maximum, one patient), an Encounter based on such a course one of its sessions (the maximum, the plan's
    period and status, one patient), a PHQ-9 Observation of the plan, of one of its courses or of one of its
    sessions one of its scores (range, whole number, no unit, not in the future, one patient). Others are IPT ones by claim only."""
    if not _may_be_linked(resource) or not plans_affected(resource, lookup):
        return None
    return _BY_LINK[resource["resourceType"]]


def has_errors(issues: Iterable[Issue]) -> bool:
    return any(i.is_error for i in issues)


# ---------------------------------------------------------------------------------------------
# graph helpers
def _same_subject(a: dict | None, b: dict | None) -> bool:
    return same_subject(subject_of(a), subject_of(b))


def _resolve(refs: Iterable[dict] | None, rtype: str, lookup: ResourceLookup) -> list[tuple[int, str, dict | None]]:
    """(index, reference, resource or None) for each reference of `rtype` in refs."""
    out = []
    for i, ref in enumerate(refs or []):
        parsed = split_reference(ref)
        if parsed and parsed[0] == rtype:
            out.append((i, ref.get("reference"), lookup.read(rtype, parsed[1])))
    return out


def _plan_courses(plan_id: str, lookup: ResourceLookup) -> list[dict]:
    return lookup.search("ServiceRequest", [("based-on", reference("CarePlan", plan_id))])


def _course_sessions(courses: Iterable[dict], lookup: ResourceLookup) -> list[dict]:
    seen: dict[str, dict] = {}
    for course in courses:
        for enc in lookup.search("Encounter", [("based-on", reference("ServiceRequest", course["id"]))]):
            seen.setdefault(enc["id"], enc)
    return list(seen.values())


def _ordered_total(courses: Iterable[dict], protocol: Protocol) -> int:
    """The sessions the courses order (quantity, else their timing's count), closed ones too: what the plan
    meant when its sessions were numbered and phased (a course completed early makes neither its held
    sessions late ones nor its last ones termination sessions); the protocol's typical count when they
    order none."""
    return sum(progress.ordered_sessions(c) for c in courses
               if c.get("status") != "entered-in-error") or protocol.typical_sessions


def _planned_total(courses: list[dict], protocol: Protocol, lookup: ResourceLookup) -> int:
    """The sessions the courses still plan, as $ipt-progress counts them (a completed or revoked course
    plans only those held or missed under it): what a new order adds to; the protocol's typical count
    when they order none."""
    closed = any(c.get("status") in progress.CLOSED_COURSE for c in courses)
    sessions = _course_sessions(courses, lookup) if closed else []
    return progress.planned_sessions(courses, sessions) or protocol.typical_sessions


def _problem_area_refs(plan: dict, lookup: ResourceLookup) -> list[tuple[int, str, dict]]:
    out = []
    for i, ref, condition in _resolve(plan.get("addresses"), "Condition", lookup):
        if condition and is_problem_area(condition) and not _condition_in_error(condition):
            out.append((i, ref, condition))
    return out


def is_problem_area(condition: dict) -> bool:
    return claims_profile(condition, PROBLEM_AREA_PROFILE) or ipt_coding(condition.get("code"), CS_PROBLEM_AREA) is not None


def is_diagnosis(condition: dict) -> bool:
    return any(c.get("code") in DIAGNOSIS_CATEGORIES
               for cc in condition.get("category") or [] for c in cc.get("coding") or [])


def _condition_in_error(condition: dict) -> bool:
    return any(c.get("code") == "entered-in-error"
               for c in (condition.get("verificationStatus") or {}).get("coding") or [])


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text \
            else datetime.fromisoformat(text[:10])
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _starts_after(text: str | None, moment: datetime) -> bool:
    """Whether a FHIR date, dateTime or instant of any precision (`2099`, `2099-05`, a full instant)
    begins after `moment`: the start of the range it names (fhir.dates)."""
    if not isinstance(text, str):
        return False
    try:
        low, _high = parse_fhir_datetime_range(text)
    except ValueError:
        return False  # malformed: the validator's to report
    return low > moment


def _session_start(encounter: dict) -> str | None:
    return (encounter.get("period") or {}).get("start")


def _session_phase(encounter: dict, protocol: Protocol, total: int) -> str | None:
    number = session_number(encounter)
    return session_phase(encounter) or (protocol.phase_for(number, total) if number else None)


def _ext_path(rtype: str, resource: dict, ext_id: str) -> str:
    found = extensions(resource, ext_id)
    url = found[0]["url"] if found else ext_id
    return f"{rtype}.extension.where(url='{url}').value"


def _transition(rtype: str, path: str, old: str | None, new: str | None,
                forbidden: dict[str, set[str]], warn: dict[str, set[str]]) -> list[Issue]:
    if old is None or new is None or old == new:
        return []
    if new in forbidden.get(old, ()):
        return [error("business-rule", f"{rtype} status cannot change from {old} to {new}", path)]
    if new in warn.get(old, ()):
        return [warning("business-rule", f"{rtype} status changes from {old} back to {new}; check this is intended",
                        path)]
    return []


# ---------------------------------------------------------------------------------------------
# CarePlan
def _check_careplan(plan: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    issues = _transition("CarePlan", "CarePlan.status", (previous or {}).get("status"), plan.get("status"),
                         CAREPLAN_FORBIDDEN, CAREPLAN_WARN)
    listed_before = {g.get("reference") for g in (previous or {}).get("goal") or [] if isinstance(g, dict)}
    for i, ref, goal in _resolve(plan.get("goal"), "Goal", lookup):
        if goal is None and ref in listed_before:  # deleted since: not this write's doing
            issues.append(warning("business-rule", f"goal {ref} no longer exists; remove it from the plan",
                                  f"CarePlan.goal[{i}]"))
        elif goal is None:
            issues.append(error("business-rule", f"goal {ref} does not exist", f"CarePlan.goal[{i}]"))
        elif not _same_subject(goal, plan):
            issues.append(error("business-rule",
                                f"goal {ref} is about {subject_of(goal)}, the plan about {subject_of(plan)}",
                                f"CarePlan.goal[{i}]"))
    for i, ref, condition in _resolve(plan.get("addresses"), "Condition", lookup):
        if condition is not None and not _same_subject(condition, plan):
            issues.append(error("business-rule",
                                f"condition {ref} is about {subject_of(condition)}, the plan about {subject_of(plan)}",
                                f"CarePlan.addresses[{i}]"))
    named = plan.get("instantiatesCanonical") or []
    if named and not any(get_protocol(url) for url in named):
        issues.append(warning("business-rule", f"{', '.join(named)} is no IPT protocol this server knows; the "
                                               f"limits of {protocol_for_careplan(None).title} apply",
                              "CarePlan.instantiatesCanonical"))
    areas = _problem_area_refs(plan, lookup)
    if len(areas) > 2:
        issues.append(warning("business-rule",
                              f"the plan addresses {len(areas)} IPT problem areas; IPT usually focuses on one or two",
                              "CarePlan.addresses"))
    issues += _other_open_plans(plan, previous, lookup)
    if not plan.get("id") or (plan.get("status") == "draft" and previous is None):
        return issues

    protocol = protocol_for_careplan(plan)
    courses = _plan_courses(plan["id"], lookup)
    sessions = _course_sessions(courses, lookup) if courses else []
    total = _ordered_total(courses, protocol)
    live = [s for s in sessions if s.get("status") not in NOT_COUNTED]

    for course in courses:
        if not _same_subject(course, plan):
            issues.append(error("business-rule", f"course ServiceRequest/{course['id']} is about {subject_of(course)}, "
                                                  f"the plan about {subject_of(plan)}", "CarePlan.subject"))
    for session in live:
        if not _same_subject(session, plan):
            issues.append(error("business-rule", f"session Encounter/{session['id']} is about {subject_of(session)}, "
                                                  f"the plan about {subject_of(plan)}", "CarePlan.subject"))

    period = plan.get("period") or {}
    lo, hi = as_date(period.get("start")), as_date(period.get("end"))
    for session in live:
        day = as_date(_session_start(session))
        if day and ((lo and day < lo) or (hi and day > hi)):
            issues.append(error("business-rule", f"session Encounter/{session['id']} on {day} falls outside the plan "
                                                  f"period {period.get('start')} to {period.get('end', 'open')}",
                                "CarePlan.period"))

    initial_end = protocol.initial_phase_end(total)
    if not areas and not protocol.is_maintenance:
        late = [s for s in live if s.get("status") in HELD and (session_number(s) or 0) > initial_end]
        if late:
            # An area since entered in error left the plan without one: the plan's own edits go on, told so.
            flag = warning if previous is not None and not _problem_area_refs(previous, lookup) else error
            issues.append(flag("business-rule",
                               f"no IPT problem area is recorded, but session {session_number(late[0])} after the "
                               f"initial phase (sessions 1-{initial_end}) was held", "CarePlan.addresses"))
    if len(live) > protocol.max_sessions and protocol.id != protocol_for_careplan(previous or plan).id:
        issues.append(error("business-rule", f"{len(live)} sessions of this plan are recorded; {protocol.title} "
                                             f"allows at most {protocol.max_sessions}",
                            "CarePlan.instantiatesCanonical"))

    if plan.get("status") == "completed" and (previous or {}).get("status") != "completed" \
            and not protocol.is_maintenance:
        held_termination = [s for s in live if s.get("status") == "finished"
                            and _session_phase(s, protocol, total) == "termination"]
        if not held_termination:
            issues.append(error("business-rule", "a completed IPT plan needs a held (finished) termination-phase "
                                                 "session; use revoked for a course that ended early",
                                "CarePlan.status"))
    if plan.get("status") == "entered-in-error" and (previous or {}).get("status") != "entered-in-error":
        open_sessions = [s for s in sessions if s.get("status") != "entered-in-error"]
        if open_sessions:
            issues.append(warning("business-rule", f"the plan is entered in error but {len(open_sessions)} of its "
                                                   "sessions are not; mark them entered-in-error too",
                                  "CarePlan.status"))
    return issues


OPEN_PLAN = ("active", "on-hold")


def _other_open_plans(plan: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    """A plan that opens (created, or moved to active or on-hold) while its patient has another open IPT
    plan: two courses at once are most often one stored twice (an $apply Bundle posted again)."""
    subject = (plan.get("subject") or {}).get("reference")
    if plan.get("status") not in OPEN_PLAN or (previous or {}).get("status") in OPEN_PLAN or not subject:
        return []
    others = [p["id"] for p in lookup.search("CarePlan", [("subject", subject)])
              if p.get("id") != plan.get("id") and p.get("status") in OPEN_PLAN and claims_profile(p, CAREPLAN_PROFILE)]
    if not others:
        return []
    return [warning("business-rule", f"{subject} already has an open IPT plan "
                                     f"({', '.join(f'CarePlan/{i}' for i in sorted(others))}); check this one is "
                                     "not a second copy", "CarePlan.status")]


# ---------------------------------------------------------------------------------------------
# ServiceRequest (course)
def _plan_of(resource: dict, lookup: ResourceLookup) -> tuple[int, str, dict | None] | None:
    plans = _resolve(resource.get("basedOn"), "CarePlan", lookup)
    found = [p for p in plans if p[2] is not None]
    return found[0] if found else (plans[0] if plans else None)


def _check_course(course: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    issues = _transition("ServiceRequest", "ServiceRequest.status", (previous or {}).get("status"),
                         course.get("status"), REQUEST_FORBIDDEN, {})
    found = _plan_of(course, lookup)
    if found is None or found[2] is None:
        what = f"CarePlan {found[1]} does not exist" if found else "it names no CarePlan"
        return issues + [error("business-rule", f"an IPT course must be based on its CarePlan; {what}",
                               "ServiceRequest.basedOn")]
    index, ref, plan = found
    if not _same_subject(course, plan):
        issues.append(error("business-rule", f"the course is about {subject_of(course)}, its plan {ref} about "
                                              f"{subject_of(plan)}", "ServiceRequest.subject"))
    if previous is None and course.get("status") in ("draft", "active", "on-hold") and plan.get("status") in CLOSED_PLAN:
        issues.append(error("business-rule", f"no new course can be ordered on a {plan.get('status')} plan ({ref})",
                            f"ServiceRequest.basedOn[{index}]"))
    if not claims_profile(plan, CAREPLAN_PROFILE):
        return issues
    protocol = protocol_for_careplan(plan)
    # Courses a transaction orders after this one are theirs to answer for (see ResourceLookup.written_after).
    others = [c for c in _plan_courses(plan["id"], lookup) if c.get("id") != course.get("id")
              and reference("ServiceRequest", c["id"]) not in lookup.written_after]
    total = _planned_total([*others, course], protocol, lookup) if course.get("status") != "entered-in-error" else 0
    if total > protocol.max_sessions:
        issues.append(error("business-rule", f"{total} sessions ordered for the plan; {protocol.title} allows at most "
                                             f"{protocol.max_sessions}", "ServiceRequest.quantity"))
    elif total < protocol.min_sessions and course.get("status") not in CLOSED_COURSE:
        # Shorter courses are a clinician's call (a course stopped early is revoked or completed, not
        # planned short), so a warning: below the protocol's minimum its evidence no longer applies.
        issues.append(warning("business-rule", f"{total} sessions ordered for the plan; {protocol.title} plans at "
                                               f"least {protocol.min_sessions}", "ServiceRequest.quantity"))
    count = (((course.get("occurrenceTiming") or {}).get("repeat")) or {}).get("count")
    quantity = (course.get("quantityQuantity") or {}).get("value")
    if isinstance(count, int) and isinstance(quantity, (int, float)) and count != quantity:
        issues.append(warning("business-rule", f"occurrenceTiming.repeat.count {count} differs from quantity {quantity}",
                              "ServiceRequest.occurrence"))
    return issues


# ---------------------------------------------------------------------------------------------
# Encounter (session)
def _session_type_warnings(session: dict) -> list[Issue]:
    """A session typed with CPT codes, none of them a psychotherapy session's, is most likely miscoded (an
    office visit, 99213): a warning, since billing practice differs between clinics."""
    for i, concept in enumerate(session.get("type") or []):
        codings = (concept or {}).get("coding") or []
        codes = [c.get("code") for c in codings if isinstance(c, dict) and c.get("system") == CPT]
        if codes and not CPT_DISPLAY.keys() & set(codes):
            return [warning("business-rule", f"CPT {', '.join(map(str, codes))} is not an IPT session type "
                                             f"({', '.join(sorted(CPT_DISPLAY))})", f"Encounter.type[{i}]")]
    return []


def _check_session(session: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    issues = _transition("Encounter", "Encounter.status", (previous or {}).get("status"), session.get("status"),
                         ENCOUNTER_FORBIDDEN, ENCOUNTER_WARN)
    status = session.get("status")
    issues += _session_type_warnings(session)
    courses = [c for c in _resolve(session.get("basedOn"), "ServiceRequest", lookup)]
    existing = [c for c in courses if c[2] is not None]
    if not existing:
        what = f"ServiceRequest {courses[0][1]} does not exist" if courses else "it names no ServiceRequest"
        return issues + [error("business-rule", f"an IPT session must be based on its course; {what}",
                               "Encounter.basedOn")]
    c_index, c_ref, course = existing[0]
    if not _same_subject(session, course):
        issues.append(error("business-rule", f"the session is about {subject_of(session)}, its course {c_ref} about "
                                              f"{subject_of(course)}", "Encounter.subject"))
    if status == "entered-in-error":
        return issues
    contradiction = _attendance_contradiction(session)
    if contradiction is not None:  # $ipt-progress counts by status: a no-show would count as attended
        kept = previous is not None and _attendance_contradiction(previous) == contradiction
        issues.append((warning if kept else error)("business-rule", contradiction,
                                                   _ext_path("Encounter", session, EXT_ATTENDANCE)))
    found = _plan_of(course, lookup)
    plan = found[2] if found else None
    is_new = previous is None or previous.get("status") in NOT_COUNTED and status not in NOT_COUNTED
    if is_new and status in UPCOMING and course.get("status") in CLOSED_COURSE:
        issues.append(error("business-rule", f"no new session on a {course.get('status')} course ({c_ref})",
                            f"Encounter.basedOn[{c_index}]"))
    if plan is None or not claims_profile(plan, CAREPLAN_PROFILE):
        return issues
    plan_ref = found[1]
    if not _same_subject(session, plan):
        issues.append(error("business-rule", f"the session is about {subject_of(session)}, its plan {plan_ref} about "
                                              f"{subject_of(plan)}", "Encounter.subject"))
    if is_new and status in UPCOMING and plan.get("status") in CLOSED_PLAN:
        issues.append(error("business-rule", f"no new session on a {plan.get('status')} plan ({plan_ref})",
                            f"Encounter.basedOn[{c_index}]"))
    if status in NOT_COUNTED:
        return issues

    start = _session_start(session)
    period = plan.get("period") or {}
    day, lo, hi = as_date(start), as_date(period.get("start")), as_date(period.get("end"))
    if day and ((lo and day < lo) or (hi and day > hi)):
        issues.append(error("business-rule", f"session date {day} is outside the plan period "
                                             f"{period.get('start')} to {period.get('end', 'open')} ({plan_ref})",
                            "Encounter.period.start"))

    protocol = protocol_for_careplan(plan)
    plan_courses = _plan_courses(plan["id"], lookup)
    total = _ordered_total(plan_courses, protocol)
    others = [s for s in _course_sessions(plan_courses, lookup)
              if s.get("id") != session.get("id") and s.get("status") not in NOT_COUNTED]
    number = session_number(session)
    number_path = _ext_path("Encounter", session, EXT_SESSION_NUMBER)
    # The plan's count as of this write: sessions a transaction writes after it cross the limit themselves.
    count = sum(1 for s in others if reference("Encounter", s["id"]) not in lookup.written_after) + 1
    # An edit of a session the plan already counted, under the same number, adds no session: a limit
    # the plan exceeds anyway (say its protocol changed since) is reported, not held against the edit.
    counted_before = previous is not None and previous.get("status") not in NOT_COUNTED \
        and session_number(previous) == number

    if number is not None and number > protocol.max_sessions:
        issues.append((warning if counted_before else error)(
            "business-rule", f"session number {number} exceeds the {protocol.title} maximum of "
                             f"{protocol.max_sessions} sessions", number_path))
    elif count > protocol.max_sessions and counted_before:
        issues.append(warning("business-rule", f"the plan has {count} sessions; {protocol.title} allows at most "
                                               f"{protocol.max_sessions}", "Encounter.basedOn"))
    elif count > protocol.max_sessions:
        issues.append(error("business-rule", f"this would be session {count} of the plan; {protocol.title} allows at "
                                             f"most {protocol.max_sessions}", "Encounter.basedOn"))
    elif (number or 0) > total or count > total:
        issues.append(warning("business-rule", f"more sessions than the {total} planned for {plan_ref}",
                              number_path if (number or 0) > total else "Encounter.basedOn"))

    moment = _moment(start)
    phase = session_phase(session)
    phase_path = _ext_path("Encounter", session, EXT_PHASE)
    if number is not None:
        for other in others:
            other_number = session_number(other)
            if other_number is None:
                continue
            if other_number == number:
                issues.append(error("business-rule", f"session number {number} is already used by Encounter/"
                                                     f"{other['id']} in plan {plan_ref}", number_path))
                continue
            other_moment = _moment(_session_start(other))
            if moment and other_moment and ((other_number < number and other_moment > moment)
                                            or (other_number > number and other_moment < moment)):
                issues.append(error("business-rule", f"session numbers must increase with the session date: session "
                                                     f"{number} on {start} vs session {other_number} on "
                                                     f"{_session_start(other)} (Encounter/{other['id']})",
                                    number_path))
            other_phase = session_phase(other)
            if phase in PHASE_ORDER and other_phase in PHASE_ORDER and (
                    (other_number < number and PHASE_ORDER[other_phase] > PHASE_ORDER[phase])
                    or (other_number > number and PHASE_ORDER[other_phase] < PHASE_ORDER[phase])):
                issues.append(error("business-rule", f"phase goes backwards: session {number} is {phase}, session "
                                                     f"{other_number} is {other_phase}", phase_path))
    if phase is not None:
        if phase not in protocol.phases:
            issues.append(error("business-rule", f"{protocol.title} has no {phase} phase "
                                                 f"(phases: {', '.join(protocol.phases)})", phase_path))
        elif number is not None and phase != protocol.phase_for(number, total):
            issues.append(warning("business-rule", f"session {number} of {total} is expected in the "
                                                   f"{protocol.phase_for(number, total)} phase, not {phase}",
                                  phase_path))

    areas = _problem_area_refs(plan, lookup)
    initial_end = protocol.initial_phase_end(total)
    if not areas and not protocol.is_maintenance and status in HELD and (number or 0) > initial_end:
        held_before = counted_before and previous.get("status") in HELD
        issues.append((warning if held_before else error)(
            "business-rule", f"by the end of the initial phase (session {initial_end}) the plan "
                             f"{plan_ref} must address 1-2 IPT problem areas (CarePlan.addresses)",
            "Encounter.basedOn"))
    area_refs = [ref for _, ref, _ in areas]
    for i, ext in enumerate(extensions(session, EXT_PROBLEM_AREA_FOCUS)):
        focus = (ext.get("valueReference") or {}).get("reference")
        if focus and not any(same_reference(focus, r) for r in area_refs):
            issues.append(warning("business-rule", f"focus {focus} is not a problem area of plan {plan_ref}",
                                  _ext_path("Encounter", session, EXT_PROBLEM_AREA_FOCUS)))
    return issues


def _attendance_contradiction(session: dict) -> str | None:
    code, status = session_attendance(session), session.get("status")
    allowed = ATTENDANCE_STATUSES.get(code or "")
    if allowed is None or status in allowed:
        return None
    return f"attendance '{code}' contradicts the session's status '{status}' (expected {' or '.join(sorted(allowed))})"


# ---------------------------------------------------------------------------------------------
# Goal
def _check_goal(goal: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    issues = _transition("Goal", "Goal.lifecycleStatus", (previous or {}).get("lifecycleStatus"),
                         goal.get("lifecycleStatus"), {"entered-in-error": {
                             "proposed", "planned", "accepted", "active", "on-hold", "completed", "cancelled",
                             "rejected"}}, {})
    if goal.get("lifecycleStatus") == "entered-in-error":
        return issues
    # achievementStatus binds only preferably to HL7's value set, so another system's codes may stand; but a
    # code claiming HL7's system must be one of its codes ($ipt-progress reports it as the goal's achievement)
    for i, coding in enumerate((goal.get("achievementStatus") or {}).get("coding") or []):
        if isinstance(coding, dict) and coding.get("system") == GOAL_ACHIEVEMENT \
                and coding.get("code") not in GOAL_ACHIEVEMENT_CODES:
            issues.append(error("code-invalid", f"'{coding.get('code')}' is not a code of {GOAL_ACHIEVEMENT} "
                                                f"({', '.join(sorted(GOAL_ACHIEVEMENT_CODES))})",
                                f"Goal.achievementStatus.coding[{i}].code"))
    addressed = _resolve(goal.get("addresses"), "Condition", lookup)
    valid = []
    for i, ref, condition in addressed:
        path = f"Goal.addresses[{i}]"
        if condition is None:
            issues.append(error("business-rule", f"addressed condition {ref} does not exist", path))
        elif not _same_subject(goal, condition):
            issues.append(error("business-rule", f"the goal is about {subject_of(goal)}, condition {ref} about "
                                                  f"{subject_of(condition)}", path))
        elif is_problem_area(condition) or is_diagnosis(condition):
            valid.append(ref)
    if not valid and not any(i.is_error and i.expression and i.expression[0].startswith("Goal.addresses")
                             for i in issues):
        issues.append(error("business-rule", "an IPT goal must address an IPT problem area or the diagnosis "
                                             "(a Condition of the same patient)", "Goal.addresses"))
    if goal.get("id"):
        for plan in lookup.search("CarePlan", [("goal", reference("Goal", goal["id"]))]):
            if not claims_profile(plan, CAREPLAN_PROFILE):
                continue
            if not _same_subject(goal, plan):
                issues.append(error("business-rule", f"the goal is about {subject_of(goal)}, plan CarePlan/{plan['id']} "
                                                      f"about {subject_of(plan)}", "Goal.subject"))
            elif valid and not any(same_reference(v, a) for v in valid for a in plan.get("addresses") or []):
                issues.append(warning("business-rule", f"the goal addresses none of the conditions of plan "
                                                       f"CarePlan/{plan['id']}", "Goal.addresses"))
    return issues


# ---------------------------------------------------------------------------------------------
# Observation (score)
def _check_score(obs: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    issues = _transition("Observation", "Observation.status", (previous or {}).get("status"), obs.get("status"),
                         {"entered-in-error": {"registered", "preliminary", "final", "amended", "corrected",
                                               "cancelled", "unknown"}}, {})
    value = observation_score(obs)  # None for a declined questionnaire (dataAbsentReason): nothing to judge
    quantity = obs.get("valueQuantity")
    if isinstance(quantity, dict) and "value" not in quantity:
        issues.append(error("required", "a score's valueQuantity holds its total (a questionnaire not filled in "
                                        "has no value[x] and a dataAbsentReason instead)",
                            "Observation.valueQuantity.value"))
    unit = quantity.get("code") if isinstance(quantity, dict) and quantity.get("system") == UCUM else None
    if isinstance(unit, str) and not _DIMENSIONLESS.fullmatch(unit):
        issues.append(error("business-rule", f"a score's total has no unit of measure (UCUM '1' or an annotation "
                                             f"such as '{{score}}'), not '{unit}'", "Observation.valueQuantity.code"))
    for coding in (obs.get("code") or {}).get("coding") or []:
        bounds = SCORE_RANGES.get(coding.get("code")) if coding.get("system") == "http://loinc.org" else None
        if not bounds or value is None:
            continue
        name = coding.get("display") or coding["code"]
        if not (bounds[0] <= value <= bounds[1]):
            issues.append(error("business-rule", f"{name} total must be within {bounds[0]}-{bounds[1]}, "
                                                 f"not {value:g}", "Observation.value"))
        elif not value.is_integer():  # these totals are sums of whole item scores
            issues.append(error("business-rule", f"{name} total is a whole number, not {value:g}",
                                "Observation.valueQuantity.value"))
    for rtype, what in (("CarePlan", "plan"), ("ServiceRequest", "course")):
        for i, ref, target in _resolve(obs.get("basedOn"), rtype, lookup):
            if target is None:
                issues.append(error("business-rule", f"{ref} does not exist", f"Observation.basedOn[{i}]"))
            elif not _same_subject(obs, target):
                issues.append(error("business-rule", f"the score is about {subject_of(obs)}, {what} {ref} about "
                                                      f"{subject_of(target)}", "Observation.subject"))
    taken = _moment(observation_date(obs))
    retracted = obs.get("status") in ("entered-in-error", "cancelled")  # may always be said of a score
    if not retracted and _starts_after(observation_date(obs), datetime.now(timezone.utc) + SCORE_CLOCK_SLACK):
        # A measurement not taken yet: as the latest score it would stand for the course's outcome.
        issues.append(error("business-rule", f"the score is dated {observation_date(obs)}, in the future",
                            "Observation.effective"))
    parsed = split_reference(obs.get("encounter"))
    if parsed and parsed[0] == "Encounter":
        encounter = lookup.read("Encounter", parsed[1])
        if encounter is not None and not _same_subject(obs, encounter):
            issues.append(error("business-rule", f"the score is about {subject_of(obs)}, its session "
                                                  f"Encounter/{parsed[1]} about {subject_of(encounter)}",
                                "Observation.encounter"))
        elif encounter is not None:
            issues += _score_session_warnings(obs, taken, encounter, parsed[1])
    return issues


# A UCUM unit that measures nothing: '1', or an annotation alone ('{score}'), which UCUM reads as 1.
_DIMENSIONLESS = re.compile(r"1|\{[^{}]*\}")
# How far ahead of this server's clock a score's date may be (time zones, clocks slightly apart).
SCORE_CLOCK_SLACK = timedelta(days=1)
# How far from its session's start a score may be dated: filled in the waiting room, or the day after.
SCORE_SESSION_SLACK = timedelta(days=2)


def _score_session_warnings(obs: dict, taken: datetime | None, session: dict, session_id: str) -> list[Issue]:
    """A score names the session it was taken at: one not held (still planned, or cancelled) or far from
    the score's date is most likely the wrong session."""
    status = session.get("status")
    if status in ("planned", "cancelled", "entered-in-error"):
        return [warning("business-rule", f"the score's session Encounter/{session_id} is {status}, not held; "
                                         "record the session as held, or link the score to the session it "
                                         "was taken at", "Observation.encounter")]
    start = _moment(_session_start(session))
    if taken is not None and start is not None and abs(taken - start) > SCORE_SESSION_SLACK:
        return [warning("business-rule", f"the score is dated {observation_date(obs)}, its session "
                                         f"Encounter/{session_id} {_session_start(session)}",
                        "Observation.effective")]
    return []


# ---------------------------------------------------------------------------------------------
# Condition (problem area)
def _check_problem_area(condition: dict, previous: dict | None, lookup: ResourceLookup) -> list[Issue]:
    issues: list[Issue] = []
    if not condition.get("id"):
        return issues
    for plan in lookup.search("CarePlan", [("condition", reference("Condition", condition["id"]))]):
        if claims_profile(plan, CAREPLAN_PROFILE) and not _same_subject(condition, plan):
            issues.append(error("business-rule", f"the problem area is about {subject_of(condition)}, plan "
                                                  f"CarePlan/{plan['id']} about {subject_of(plan)}", "Condition.subject"))
    return issues


_CHECKERS = {
    (CAREPLAN_PROFILE, "CarePlan"): _check_careplan,
    (COURSE_PROFILE, "ServiceRequest"): _check_course,
    (SESSION_PROFILE, "Encounter"): _check_session,
    (GOAL_PROFILE, "Goal"): _check_goal,
    (SCORE_PROFILE, "Observation"): _check_score,
    (PROBLEM_AREA_PROFILE, "Condition"): _check_problem_area,
}
