"""The checks the services call where results are produced and writes are made.

Every function reads the request's AccessContext; with auth off (or outside a request) the context is
unrestricted and each check is a single attribute test.
"""
from __future__ import annotations

from typing import Iterable

from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.outcome import FHIRError, error, read_only

from . import context
from .compartment import in_patient_compartment_type, patients_of
from .labels import is_sensitive, may_be_sensitive
from .scopes import AUDIT_TYPE, INTERACTION_LETTER

_WRITES = {"create", "update", "patch", "delete"}


# Types outside the Patient compartment that carry no patient data: patient/ scopes may read and search them.
NOT_PATIENT_DATA = frozenset({
    "CodeSystem", "ValueSet", "ConceptMap", "NamingSystem", "StructureDefinition", "SearchParameter",
    "OperationDefinition", "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide", "PlanDefinition",
    "ActivityDefinition", "Questionnaire", "Library", "Measure", "Medication", "Substance", "Device",
    "Organization", "Location", "HealthcareService", "Endpoint", "Practitioner", "PractitionerRole",
})
_READS = {"read", "vread", "history-instance", "search", "search-type", "search-system", "history-type",
          "history-system"}


def forbidden(diagnostics: str) -> FHIRError:
    err = FHIRError(403, [error("forbidden", diagnostics)])
    err.headers["WWW-Authenticate"] = 'Bearer realm="ipt-fhir", error="insufficient_scope"'
    return err


def require(interaction: str, resource_type: str) -> str | None:
    """Refuse (403) unless the token's scopes grant `interaction` on `resource_type`. Returns the patient id
    the request is confined to (patient/ scopes), or None when it is not confined."""
    ctx = context.current()
    if ctx.unrestricted:
        return None
    level = ctx.scopes.level(interaction, resource_type)
    if level is None:
        letter = INTERACTION_LETTER.get(interaction, "?")
        raise forbidden(f"The access token has no scope granting '{letter}' ({interaction}) on {resource_type}")
    if level == "patient":
        if not ctx.patient:
            raise forbidden("patient/ scopes need a token with a patient claim")
        if not in_patient_compartment_type(resource_type):
            if resource_type in NOT_PATIENT_DATA and interaction in _READS:
                return None  # definitions and directories: not about any patient, readable as a whole
            raise forbidden(f"patient/ scopes are confined to the patient's compartment; {resource_type} is not in it")
        return ctx.patient
    return None


def require_operation(resource_type: str | None, resource_id: str | None, db) -> None:  # noqa: ANN001
    """The check before an operation runs, as a request or as a Bundle entry: a read scope at system
    level, search on the type at type level, read on the type at instance level; an instance operation
    ($ipt-progress, $validate…) reads the instance, so under patient/ scopes it must be in the token's
    compartment (looked up in `db`, a store Database)."""
    ctx = context.current()
    if ctx.unrestricted:
        return
    if resource_type is None:
        if not ctx.scopes.any_for("read"):
            raise forbidden("The access token has no read scope")
        return
    patient = require("read" if resource_id else "search", resource_type)
    if patient is None or resource_id is None:
        return
    if resource_type == "Patient":
        if resource_id != patient:
            raise forbidden("patient/ scopes are confined to the compartment of the token's patient")
        return
    from ipt_fhir.store import resources as repo

    with db.read() as conn:
        current = repo.current(conn, resource_type, resource_id)
    if current is not None and not current.deleted:
        check_resource("read", resource_type, current.content)


def audit_write_refused() -> FHIRError:
    """AuditEvents are the server's record: the API reads them only. The 405 names what it does serve
    (RFC 9110 15.5.6: a 405 carries Allow)."""
    return read_only("AuditEvents are written by the server only; they cannot be created, changed or deleted "
                     "through the API")


def writable(resource_type: str) -> bool:
    """Whether the API writes this type at all: AuditEvents are the server's own record (a write is a
    405, and a 405's Allow leaves the writes out)."""
    return resource_type != AUDIT_TYPE


def check_resource(interaction: str, resource_type: str, resource: dict | bytes | None) -> None:
    """Scope, compartment and label checks on one resource being read, written or returned."""
    if interaction in _WRITES and not writable(resource_type):  # a set lookup first: reads pass here
        raise audit_write_refused()
    ctx = context.current()
    if ctx.unrestricted or resource is None:
        return
    patient = require(interaction, resource_type)
    if isinstance(resource, (bytes, bytearray)):
        if patient is None and (ctx.sensitive or not may_be_sensitive(resource)):
            return
        resource = load_stored(resource)
    if patient is not None and patient not in patients_of(resource_type, resource):
        raise forbidden(f"{resource_type}/{resource.get('id', '')} is outside the compartment of the token's patient")
    if not ctx.sensitive and is_sensitive(resource):
        raise forbidden("The resource is labelled sensitive (PSYTHPN or R); reading it needs the sensitive scope")


def visible(resource_type: str, content: bytes | None, interaction: str = "read") -> bool:
    """Whether a resource may appear in a result (includes, history entries): filtered, never refused."""
    if content is None or context.current().unrestricted:
        return True
    try:
        check_resource(interaction, resource_type, content)
    except FHIRError:
        return False
    return True


def filter_rows(rows: Iterable, type_at: int = 0, content_at: int = 2, interaction: str = "read") -> list:
    if context.current().unrestricted:
        return list(rows)
    return [r for r in rows if visible(r[type_at], r[content_at], interaction)]


def how_many(count: int) -> str:
    """A number of matches as an error message may say it: exact with authorization off; "more than one"
    to a token, as the count takes in resources it may not see."""
    return str(count) if context.current().unrestricted else "more than one"


def is_restricted() -> bool:
    return not context.current().unrestricted


def search_confinement(types: list[str], interaction: str = "search") -> tuple[list[str], dict[str, str], bool]:
    """For a search over `types`: (the types the token may search, {type: patient id} for those confined
    to a compartment, whether sensitive-labelled resources must be excluded). A single requested type that
    is not allowed is refused (403); in multi-type searches the disallowed types are dropped."""
    ctx = context.current()
    if ctx.unrestricted:
        return types, {}, False
    allowed: list[str] = []
    confined: dict[str, str] = {}
    for t in types:
        try:
            patient = require(interaction, t)
        except FHIRError:
            if len(types) == 1:
                raise
            continue
        allowed.append(t)
        if patient is not None:
            confined[t] = patient
    if not allowed:
        raise forbidden("The access token grants search on none of the requested types")
    return allowed, confined, not ctx.sensitive


def visible_history(resource_type: str, content: bytes | None) -> bool:
    """A history entry: deletions (no content) show only to tokens not confined to a compartment."""
    ctx = context.current()
    if ctx.unrestricted:
        return True
    if content is None:
        level = ctx.scopes.level("history-type", resource_type) or ctx.scopes.level("read", resource_type)
        return level is not None and level != "patient"
    return visible(resource_type, content, "read")
