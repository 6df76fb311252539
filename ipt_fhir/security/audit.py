"""The audit trail: one AuditEvent per access and patient, shaped after IHE Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/): who (user, client, server agents), what (interaction, resources,
query), when (recorded), outcome, and which patient (an access of several patients, a search say, is
recorded once for each, so that no patient's events name another: per_patient).

Writes are audited inside their own unit of work (`record_write`), so the AuditEvent commits or rolls back
with the change it records. Reads, searches and refused requests are noted while the request runs and
written by the HTTP middleware in one small transaction before the response leaves (`flush`). AuditEvents
are stored as ordinary resources (searchable by patient, agent, date) but only ever written here.
"""
from __future__ import annotations

import base64
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipt_fhir.fhir.jsonio import dump_json

from . import context
from .context import AccessContext

AUDIT_EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                    "display": "Restful Operation"}
_INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
_ACTION = {"create": "C", "read": "R", "vread": "R", "history-instance": "R", "history-type": "R",
           "history-system": "R", "update": "U", "patch": "U", "delete": "D", "search-type": "E",
           "search-system": "E", "operation": "E", "batch": "E", "transaction": "E"}
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"


@dataclass
class Access:
    interaction: str
    resources: list[tuple[str, str, int | None]] = field(default_factory=list)  # (type, id, version)
    patients: set[str] = field(default_factory=set)
    query: str | None = None


@dataclass
class Collector:
    """What one HTTP request did, for its audit events. Shared by reference across the request's tasks
    and threads (contextvars copy the reference, not the object)."""

    client_address: str | None = None
    server_url: str | None = None
    interaction: str | None = None  # the route's interaction, for requests that fail before a service runs
    resource_type: str | None = None
    resource_id: str | None = None
    access: AccessContext | None = None
    reads: list[Access] = field(default_factory=list)
    writes: int = 0


_collector: ContextVar[Collector | None] = ContextVar("ipt_fhir_audit", default=None)


def start(collector: Collector):  # noqa: ANN201 - a contextvars.Token
    return _collector.set(collector)


def stop(token) -> None:  # noqa: ANN001
    _collector.reset(token)


def collector() -> Collector | None:
    return _collector.get()


# --- noting accesses (services call these) ---------------------------------------------------------

def note_read(interaction: str, resource_type: str, resource_id: str, version: int | None,
              patients: set[str] | None = None) -> None:
    c = _collector.get()
    if c is not None:
        c.reads.append(Access(interaction, [(resource_type, resource_id, version)], set(patients or ())))


def note_search(interaction: str | None, query: str | None, patients: set[str]) -> None:
    """A search, history or operation result; interaction None: the route's (search-type inside a batch)."""
    c = _collector.get()
    if c is not None:
        if interaction is None:
            interaction = c.interaction if c.interaction not in (None, "batch", "transaction") else "search-type"
        c.reads.append(Access(interaction, [], set(patients), query))


def patients_in(conn: Connection, pairs: list[tuple[str, str]]) -> set[str]:
    """The patients whose compartments hold these stored resources (from the reference index), counting
    references to the request's own base only (_patients_in); none when no audit is being collected."""
    c = _collector.get()
    if c is None or not pairs:
        return set()
    return _patients_in(conn, pairs, c.server_url or "")


def _patients_in(conn: Connection, pairs: list[tuple[str, str]], base_url: str) -> set[str]:
    """base_url: the request's FHIR base; references to a Patient on another server count for none of
    ours (search_sql.local_reference)."""
    from ipt_fhir.fhir.search.registry import patient_compartment, patient_compartment_params
    from ipt_fhir.store.search_sql import local_reference
    from ipt_fhir.store.search_tables import reference_index as t

    out = {rid for rt, rid in pairs if rt == "Patient"}
    by_type: dict[str, list[str]] = {}
    for rt, rid in pairs:
        if rt != "Patient" and rt in patient_compartment():
            by_type.setdefault(rt, []).append(rid)
    for rt, ids in by_type.items():
        params = patient_compartment_params(rt)
        for chunk in range(0, len(ids), 500):
            rows = conn.execute(sa.select(t.c.target_id).distinct().where(
                t.c.resource_type == rt, t.c.resource_id.in_(ids[chunk:chunk + 500]), t.c.param.in_(params),
                t.c.target_type == "Patient", t.c.target_id.is_not(None), *local_reference(t, base_url)))
            out.update(r[0] for r in rows)
    return out


def record_write(conn: Connection, interaction: str, resource_type: str, resource_id: str, version: int,
                 resource: dict | None, previous: dict | None) -> None:
    """Inside the write's unit of work: the AuditEvent of a create, update, patch or delete."""
    c = _collector.get()
    if c is None or resource_type == "AuditEvent":
        return
    from .compartment import patients_of

    patients = set()
    for doc in (resource, previous):
        if doc is not None:
            patients |= patients_of(resource_type, doc)
    for access in per_patient(Access(interaction, [(resource_type, resource_id, version)], patients)):
        store_event(conn, build_event(c, access, status=200))
    c.writes += 1


def per_patient(access: Access) -> list[Access]:
    """The access as its AuditEvents record it: one per patient it concerns (BALP, patient privacy: an event
    that concerns one patient can be shown to that patient, by `patient/AuditEvent.rs` or an accounting of
    disclosures, without naming any other). An access of one patient or none is one event."""
    if len(access.patients) <= 1:
        return [access]
    return [replace(access, patients={p}) for p in sorted(access.patients)]


# --- building and storing -------------------------------------------------------------------------

def _outcome(status: int) -> str:
    return "0" if status < 400 else ("4" if status < 500 else "8")


def build_event(c: Collector, access: Access, *, status: int, description: str | None = None) -> dict:
    from ipt_fhir.services.resources import format_instant, now_utc

    ctx = c.access or context.current()
    user_who: dict
    if ctx.fhir_user:
        user_who = {"reference": ctx.fhir_user}
    elif ctx.subject:
        user_who = {"identifier": {"system": ctx.issuer or "urn:ietf:rfc:7519", "value": ctx.subject}}
    else:
        user_who = {"display": "anonymous (authorization off)" if ctx.unrestricted else "unauthenticated"}
    user = {"type": {"coding": [{"system": _PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
            "who": user_who, "requestor": True}
    if ctx.token_id:
        user["policy"] = [ctx.token_id]
    client = {"type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
              "who": ({"identifier": {"system": ctx.issuer or "urn:ietf:rfc:7519", "value": ctx.client_id}}
                      if ctx.client_id else {"display": "unidentified client"}),
              "requestor": False}
    if c.client_address:
        client["network"] = {"address": c.client_address, "type": "2"}
    server = {"type": {"coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]},
              "who": {"display": "ipt-fhir"}, "requestor": False}
    if c.server_url:
        server["network"] = {"address": c.server_url, "type": "5"}
    entity = [{"what": {"reference": f"Patient/{p}"},
               "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
               "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"}} for p in sorted(access.patients)]
    for rt, rid, version in access.resources:
        ref = f"{rt}/{rid}" + (f"/_history/{version}" if version else "")
        entity.append({"what": {"reference": ref},
                       "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                       "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"}})
    if access.query is not None:
        entity.append({"type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                       "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                       "query": base64.b64encode(access.query.encode()).decode()})
    event: dict = {
        "resourceType": "AuditEvent",
        "type": AUDIT_EVENT_TYPE,
        "subtype": [{"system": _INTERACTION_SYSTEM, "code": access.interaction}],
        "action": _ACTION.get(access.interaction, "E"),
        "recorded": format_instant(now_utc()),
        "outcome": _outcome(status),
        "agent": [user, client, server],
        "source": {"observer": {"display": "ipt-fhir"},
                   "type": [{"system": _SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
    }
    if status >= 400:
        event["outcomeDesc"] = description or f"HTTP {status}"
    if entity:
        event["entity"] = entity
    return event


def store_event(conn: Connection, event: dict) -> None:
    from ipt_fhir.services.resources import now_utc, with_server_meta
    from ipt_fhir.store import resources as repo
    from ipt_fhir.store.ids import new_resource_id
    from ipt_fhir.store.resources import StoredVersion
    from ipt_fhir.store.search_index import write_index

    event_id = new_resource_id()
    last_updated = now_utc()
    doc = with_server_meta(event, event_id, 1, last_updated)
    stored = StoredVersion("AuditEvent", event_id, 1, last_updated, False, dump_json(doc))
    repo.insert_new(conn, stored, "POST")
    write_index(conn, "AuditEvent", event_id, doc)


def flush(db, c: Collector, status: int) -> None:  # noqa: ANN001 - a store Database
    """After the request ran: its reads, or — when it wrote nothing and read nothing — the request itself
    (a refusal, an error, an operation)."""
    if status < 400 and not c.reads and c.writes:
        return  # its writes were audited in their own units of work
    with db.write() as conn:
        if status < 400 and c.reads:
            for access in c.reads:
                if access.resources and not access.patients:  # reads: the patients from the index
                    access.patients = _patients_in(conn, [(t, i) for t, i, _ in access.resources],
                                                   c.server_url or "")
            events = [build_event(c, one, status=status) for access in c.reads for one in per_patient(access)]
        else:
            events = [build_event(c, _request_access(c), status=status)]
        for event in events:
            store_event(conn, event)


def _request_access(c: Collector) -> Access:
    access = Access(c.interaction or "operation")
    if c.resource_type and c.resource_id:
        access.resources.append((c.resource_type, c.resource_id, None))
        if c.resource_type == "Patient":
            access.patients.add(c.resource_id)
    return access
