"""PlanDefinition/$apply for the IPT protocols: a CarePlan, its course ServiceRequest, planned sessions.

Output choice. R4 $apply (http://hl7.org/fhir/R4/plandefinition-operation-apply.html) returns one
CarePlan, with whatever else it creates contained in it. Our result is several independent resources
that live on (each session Encounter is later updated on its own) and a contained Encounter could not
even be referenced from an R4 CarePlan (activity.reference does not allow Encounter). So $apply answers
with a `transaction` Bundle whose entries use urn:uuid fullUrls: the client can inspect it, edit it and
POST it unchanged to the base to store it, and with storage requested the server processes the same
Bundle. (R5 moved $apply to returning a Bundle for the same reason.) The operation is published as this
server's own OperationDefinition ipt-apply, which the CapabilityStatement names instead of HL7's.

Links (IPT-DOMAIN.md): CarePlan.activity.reference -> ServiceRequest; ServiceRequest.basedOn ->
CarePlan (the two refer to each other: the transaction resolves both urn:uuids); Encounter.basedOn ->
ServiceRequest; Encounter participant -> practitioner; CarePlan.instantiatesCanonical -> PlanDefinition.
"""
from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Callable

from ..fhir.dates import DATE_TIME
from ..fhir.outcome import FHIRError, bad_request, error, unprocessable
from ..fhir.parameters import parameter_value
from .canonical import (
    CPT, CPT_DISPLAY, CS_FORMAT, DEFAULT_CANONICAL_BASE, EXT_FORMAT, EXT_PHASE, EXT_SESSION_NUMBER, SNOMED,
    SNOMED_IPT, SNOMED_MENTAL_HEALTH_CARE_PLAN, UCUM, US_CORE_CAREPLAN_CATEGORY, V3_ACT_CODE, CAREPLAN_PROFILE,
    COURSE_PROFILE, SESSION_PROFILE, canonical,
)
from .narrative import careplan_narrative
from .protocols import Protocol, get_protocol, phase_coding

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class AppliedPlan:
    """The resources $apply creates, each with its urn:uuid fullUrl."""

    careplan: tuple[str, dict]
    service_request: tuple[str, dict]
    sessions: list[tuple[str, dict]]

    def entries(self) -> list[tuple[str, dict]]:
        return [self.careplan, self.service_request, *self.sessions]

    def transaction(self) -> dict:
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": full_url, "resource": resource,
             "request": {"method": "POST", "url": resource["resourceType"]}}
            for full_url, resource in self.entries()]}


def parse_weekday(weekday: int | str | None) -> int | None:
    """0 = Monday ... 6 = Sunday; accepts 0-6, 1-7 as a string is not accepted; 'mon', 'Monday'."""
    if weekday is None or weekday == "":
        return None
    if isinstance(weekday, int) and not isinstance(weekday, bool):
        if 0 <= weekday <= 6:
            return weekday
    elif isinstance(weekday, str):
        key = weekday.strip().lower()[:3]
        if key in WEEKDAYS:
            return WEEKDAYS.index(key)
        if key.isascii() and key.isdigit() and 0 <= int(key) <= 6:
            return int(key)
    raise bad_request(f"weekday must be mon..sun or 0 (Monday)..6, not {weekday!r}", "weekday", code="value")


def session_dates(protocol: Protocol, start: date, count: int, weekday: int | None = None) -> list[date]:
    """The planned session dates: the protocol's cadence from the first `weekday` on or after start."""
    first = start
    if weekday is not None:
        first = start + timedelta(days=(weekday - start.weekday()) % 7)
    if protocol.interval_unit == "mo":
        out = []
        for i in range(count):
            d = add_months(first, i * protocol.interval)
            if weekday is not None:
                d = d + timedelta(days=(weekday - d.weekday()) % 7)
            out.append(d)
        return out
    step = timedelta(weeks=protocol.interval) if protocol.interval_unit == "wk" else timedelta(days=protocol.interval)
    return [first + i * step for i in range(count)]


def add_months(d: date, months: int) -> date:
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def plan_period_end(protocol: Protocol, start: date, dates: list[date]) -> date:
    """One cadence step after the last planned session (room to reschedule one), or the protocol's
    stated course length when that is later."""
    end = session_dates(protocol, dates[-1], 2)[1] if dates else start
    if protocol.course_months:
        end = max(end, add_months(start, protocol.course_months))
    return end


def session_cpt(protocol: Protocol, number: int, minutes: int) -> str:
    if protocol.format == "group":
        return "90853"
    if number == 1 and not protocol.is_maintenance:
        return "90791"
    return "90837" if minutes >= 53 else "90834"


def _uuid_factory() -> str:
    return str(uuid.uuid4())


def build_plan(
    protocol: str | Protocol,
    subject: str,
    practitioner: str | None,
    start: date,
    session_count: int | None = None,
    weekday: int | str | None = None,
    *,
    canonical_base: str = DEFAULT_CANONICAL_BASE,
    session_time: time = time(9, 0),
    utc_offset: str = "Z",
    addresses: list[str] = (),
    goals: list[str] = (),
    title: str | None = None,
    new_id: Callable[[], str] = _uuid_factory,
    created: str | None = None,
) -> AppliedPlan:
    """The resources of one IPT course under `protocol` (id, canonical URL or Protocol).

    `subject`/`practitioner` are references ("Patient/1", or urn:uuid within a caller's Bundle);
    raises FHIRError 400/422 for an unknown protocol or a session count the protocol does not allow.
    """
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    if proto is None:
        raise unprocessable([error("not-found", f"no IPT protocol {protocol!r}", "planDefinition")])
    count = proto.typical_sessions if session_count is None else session_count
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise bad_request("sessionCount must be a positive integer", "sessionCount", code="value")
    if count > proto.max_sessions:
        raise unprocessable([error("business-rule",
                                   f"{proto.title} allows at most {proto.max_sessions} sessions, not {count}",
                                   "sessionCount")])
    day = parse_weekday(weekday)
    try:
        dates = session_dates(proto, start, count, day)
        end = plan_period_end(proto, start, dates)
    except (OverflowError, ValueError):  # a date past 9999-12-31, which neither Python nor FHIR has
        raise bad_request(f"A course starting {start.isoformat()} would end after the year 9999", "start",
                          code="value") from None
    minutes = proto.session_minutes
    base = canonical_base.rstrip("/")
    plan_url, sr_url = f"urn:uuid:{new_id()}", f"urn:uuid:{new_id()}"
    format_ext = {"url": canonical(base, "StructureDefinition", EXT_FORMAT),
                  "valueCoding": {"system": canonical(base, "CodeSystem", CS_FORMAT), "code": proto.format}}

    careplan: dict = {
        "resourceType": "CarePlan",
        "meta": {"profile": [canonical(base, "StructureDefinition", CAREPLAN_PROFILE)]},
        "extension": [format_ext],
        "instantiatesCanonical": [proto.url(base)],
        "status": "active",
        "intent": "plan",
        "category": [
            {"coding": [{"system": US_CORE_CAREPLAN_CATEGORY, "code": "assess-plan",
                         "display": "Assessment and Plan of Treatment"}]},
            {"coding": [{"system": SNOMED, "code": SNOMED_MENTAL_HEALTH_CARE_PLAN,
                         "display": "Mental health care plan"}]},
        ],
        "title": title or f"{proto.title}: {count} sessions",
        "description": f"{proto.title}, {count} sessions of {minutes} minutes from {dates[0].isoformat()}.",
        "subject": {"reference": subject},
        "period": {"start": start.isoformat(), "end": end.isoformat()},
    }
    if created:
        careplan["created"] = created
    if practitioner:
        careplan["author"] = {"reference": practitioner}
    if addresses:
        careplan["addresses"] = [{"reference": r} for r in addresses]
    if goals:
        careplan["goal"] = [{"reference": r} for r in goals]
    careplan["activity"] = [{"reference": {"reference": sr_url, "display": proto.title}}]
    careplan["text"] = careplan_narrative(careplan)
    careplan = {"resourceType": "CarePlan", "text": careplan.pop("text"),
                **{k: v for k, v in careplan.items() if k != "resourceType"}}

    repeat: dict = {
        "boundsPeriod": {"start": start.isoformat(), "end": end.isoformat()},
        "count": count, "duration": minutes, "durationUnit": "min",
        "frequency": 1, "period": proto.interval, "periodUnit": proto.interval_unit,
    }
    if day is not None:
        repeat["dayOfWeek"] = [WEEKDAYS[day]]
    repeat["timeOfDay"] = [session_time.strftime("%H:%M:%S")]
    service_request: dict = {
        "resourceType": "ServiceRequest",
        "meta": {"profile": [canonical(base, "StructureDefinition", COURSE_PROFILE)]},
        "extension": [format_ext],
        "instantiatesCanonical": [proto.url(base)],
        "basedOn": [{"reference": plan_url}],
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": SNOMED, "code": SNOMED_IPT, "display": "Interpersonal psychotherapy"}],
                 "text": proto.title},
        "quantityQuantity": {"value": count, "unit": "sessions", "system": UCUM, "code": "{session}"},
        "subject": {"reference": subject},
        "occurrenceTiming": {"repeat": repeat},
        "authoredOn": created or start.isoformat(),
    }
    if practitioner:
        service_request["requester"] = {"reference": practitioner}
        service_request["performer"] = [{"reference": practitioner}]
    if addresses:
        service_request["reasonReference"] = [{"reference": r} for r in addresses]

    sessions = []
    for number, day_ in enumerate(dates, start=1):
        begin = datetime.combine(day_, session_time)
        finish = begin + timedelta(minutes=minutes)
        cpt = session_cpt(proto, number, minutes)
        encounter: dict = {
            "resourceType": "Encounter",
            "meta": {"profile": [canonical(base, "StructureDefinition", SESSION_PROFILE)]},
            "extension": [
                {"url": canonical(base, "StructureDefinition", EXT_SESSION_NUMBER), "valuePositiveInt": number},
                {"url": canonical(base, "StructureDefinition", EXT_PHASE),
                 "valueCoding": phase_coding(proto.phase_for(number, count), base)},
            ],
            "status": "planned",
            "class": {"system": V3_ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [{"coding": [{"system": CPT, "code": cpt, "display": CPT_DISPLAY[cpt]}],
                      "text": f"IPT session {number}"}],
            "subject": {"reference": subject},
            "basedOn": [{"reference": sr_url}],
            "period": {"start": _instant(begin, utc_offset), "end": _instant(finish, utc_offset)},
        }
        if practitioner:
            encounter["participant"] = [{"individual": {"reference": practitioner}}]
        if addresses:
            encounter["reasonReference"] = [{"reference": r} for r in addresses]
        sessions.append((f"urn:uuid:{new_id()}", encounter))
    return AppliedPlan((plan_url, careplan), (sr_url, service_request), sessions)


def apply_protocol(
    protocol: str | Protocol,
    subject: str,
    practitioner: str | None,
    start: date,
    session_count: int | None = None,
    weekday: int | str | None = None,
    canonical_base: str = DEFAULT_CANONICAL_BASE,
    **options,
) -> dict:
    """PlanDefinition/$apply: the transaction Bundle (urn:uuid fullUrls, POST entries) of one course.

    `options` are build_plan's keywords (session_time, utc_offset, addresses, goals, title, new_id).
    """
    return build_plan(protocol, subject, practitioner, start, session_count, weekday,
                      canonical_base=canonical_base, **options).transaction()


def _instant(moment: datetime, utc_offset: str) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + utc_offset


@dataclass
class ApplyRequest:
    """The inputs of PlanDefinition/[id]/$apply, parsed from a Parameters body or a query string."""

    subject: str
    practitioner: str | None
    start: date
    session_count: int | None = None
    weekday: int | None = None
    store: bool = False

    def kwargs(self) -> dict:
        return {"subject": self.subject, "practitioner": self.practitioner, "start": self.start,
                "session_count": self.session_count, "weekday": self.weekday}


APPLY_PARAMETERS = ("subject", "practitioner", "start", "sessionCount", "weekday", "store")


def _repeated(name: str, where: str) -> FHIRError:
    """Every parameter of $apply is 0..1 (its OperationDefinition): a second one is not silently preferred."""
    return bad_request(f"$apply takes the '{name}' parameter once; it was given more than once", where,
                       code="value")


def parse_apply_parameters(params: dict | list[tuple[str, str]]) -> ApplyRequest:
    """Parameters resource (POST) or (name, value) pairs (GET) -> ApplyRequest; FHIRError 400 if invalid.

    Names: subject (required; Reference or string "Patient/1"), practitioner, start (date, required),
    sessionCount (positive integer), weekday (mon..sun or 0-6), store (boolean: also persist the
    resources in one transaction; our addition to the R4 operation).
    """
    values: dict[str, object] = {}
    if isinstance(params, dict):
        if params.get("resourceType") != "Parameters":
            raise bad_request("the $apply body must be a Parameters resource")
        parameters = params.get("parameter", [])
        if not isinstance(parameters, list):
            raise bad_request("Parameters.parameter must be an array", "Parameters.parameter", code="structure")
        for i, p in enumerate(parameters):
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise bad_request("each parameter must be an object with a name", f"Parameters.parameter[{i}]",
                                  code="structure")
            value = parameter_value(p)
            if isinstance(value, dict):
                value = value.get("reference")
            if p["name"] in values:
                raise _repeated(p["name"], f"Parameters.parameter[{i}]")
            values[p["name"]] = value
    elif isinstance(params, list) and all(isinstance(p, tuple) and len(p) == 2 for p in params):
        for name, value in params:
            if name in values:
                raise _repeated(name, name)
            values[name] = value
    else:
        raise bad_request("the $apply body must be a Parameters resource", code="structure")
    unknown = sorted(set(values) - set(APPLY_PARAMETERS))
    if unknown:  # silently dropped, it would change nothing the client meant (HL7's encounter, setting, ...)
        raise bad_request(f"$apply takes no parameter {', '.join(map(repr, unknown))}; it takes "
                          f"{', '.join(APPLY_PARAMETERS)}", unknown[0], code="not-supported")

    def text(name: str, required: bool = False) -> str | None:
        value = values.get(name)
        if value is None or value == "":
            if required:
                raise bad_request(f"$apply needs the '{name}' parameter", name, code="required")
            return None
        return str(value)

    subject = text("subject", required=True)
    if not subject.startswith(("Patient/", "urn:uuid:")):
        raise bad_request(f"subject must reference a Patient, not {subject!r}", "subject", code="value")
    practitioner = text("practitioner")
    # the plan's author, the course's requester and performer, each session's participant: of the types all
    # four take, those a therapist is
    if practitioner is not None and not practitioner.startswith(("Practitioner/", "PractitionerRole/", "urn:uuid:")):
        raise bad_request(f"practitioner must reference a Practitioner or PractitionerRole, not {practitioner!r}",
                          "practitioner", code="value")
    start_text = text("start", required=True)
    try:
        written = DATE_TIME.fullmatch(start_text)  # date.fromisoformat also takes 20250303 and 2025-W10-1
        if written is None or written["d"] is None or written["H"] is not None:  # a day, YYYY-MM-DD
            raise ValueError
        start = date.fromisoformat(start_text)
    except ValueError:
        raise bad_request(f"start must be a date (YYYY-MM-DD), not {start_text!r}", "start", code="value") from None
    count_text = text("sessionCount")
    session_count = None
    if count_text is not None:
        if not (count_text.isascii() and count_text.isdigit()) or int(count_text) < 1:
            raise bad_request(f"sessionCount must be a positive integer, not {count_text!r}", "sessionCount",
                              code="value")
        session_count = int(count_text)
    store_text = (text("store") or "false").lower()
    if store_text not in ("true", "false"):
        raise bad_request(f"store must be true or false, not {store_text!r}", "store", code="value")
    return ApplyRequest(subject=subject, practitioner=practitioner, start=start,
                        session_count=session_count, weekday=parse_weekday(values.get("weekday")),
                        store=store_text == "true")
