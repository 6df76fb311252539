"""Access restrictions turned into search criteria, so that counts, paging and totals stay right:
patient/ scopes add the token patient's compartment to every searched type, and tokens without the
sensitive scope exclude PSYTHPN / R labelled resources (`_security:not=…`); the resources chains and
`_has` look into are restricted alike."""
from __future__ import annotations

from dataclasses import replace

from ipt_fhir.fhir.outcome import FHIRError
from ipt_fhir.fhir.search.parser import Clause, Parser

from . import context, guard
from .labels import SENSITIVE_LABELS


def restrict(types: list[str], base_url: str, *, compartment_patient: str | None = None
             ) -> tuple[list[str], dict[str, list[Clause]]]:
    """-> (the types this token may search, extra AND clauses per type)."""
    ctx = context.current()
    if ctx.unrestricted:
        return types, {}
    allowed, confined, hide_sensitive = guard.search_confinement(types)
    if confined and compartment_patient is not None and compartment_patient != ctx.patient:
        raise guard.forbidden("patient/ scopes are confined to the compartment of the token's patient")
    parser = Parser(base_url)
    extra: dict[str, list[Clause]] = {}
    for t in allowed:
        clauses = _restrictions(t, confined.get(t), hide_sensitive, parser)
        if clauses:
            extra[t] = clauses
    return allowed, extra


def restrict_nested(clauses: list[Clause], base_url: str) -> list[Clause]:
    """The clauses with the resources a chain or `_has` looks into restricted as a search of their type
    would be: `subject:Patient.name=x` or `_has:Condition:subject:code=y` filter on what they reach, and
    tested against resources the token may not read they would tell what those hold. A type the token
    may not search at all cannot be looked into (403)."""
    if context.current().unrestricted:
        return clauses
    return [_restricted(c, Parser(base_url)) for c in clauses]


def _restricted(clause: Clause, parser: Parser) -> Clause:
    if clause.kind == "chain":
        inner = [_looked_into(t, _restricted(c, parser), clause.name, parser)
                 for t, c in zip(clause.targets, clause.inner)]
        return replace(clause, inner=inner)
    if clause.kind == "has":
        return replace(clause, inner=[_looked_into(clause.source_type, _restricted(clause.inner[0], parser),
                                                   clause.name, parser)])
    if clause.kind in ("or", "and"):
        return replace(clause, inner=[_restricted(c, parser) for c in clause.inner])
    return clause


def _looked_into(resource_type: str, clause: Clause, name: str, parser: Parser) -> Clause:
    """`clause` on `resource_type`, ANDed with the token's restrictions on that type."""
    try:
        _, confined, hide_sensitive = guard.search_confinement([resource_type])
    except FHIRError:
        raise guard.forbidden(f"{name} looks into {resource_type} resources, which the access token may not "
                              "search") from None
    restrictions = _restrictions(resource_type, confined.get(resource_type), hide_sensitive, parser)
    return Clause("and", clause.name, inner=[clause, *restrictions]) if restrictions else clause


def _restrictions(resource_type: str, patient: str | None, hide_sensitive: bool, parser: Parser) -> list[Clause]:
    """The clauses confining a search of `resource_type`: the compartment of the token's patient (patient/
    scopes), no sensitive-labelled resource (without the sensitive scope)."""
    from ipt_fhir.services.search import _compartment_clause

    clauses = []
    if resource_type == "Patient" and patient is not None:
        # A patient/ token sees its own Patient only (guard: compartment.patients_of, the route's
        # check of Patient/[id]); the compartment's Patients that link to it are not its own.
        clauses.append(Clause("id", "_id", values=[patient]))
    elif patient is not None:
        clauses.append(_compartment_clause(resource_type, patient))
    if hide_sensitive:
        for system, code in SENSITIVE_LABELS:
            clauses.append(parser.parse(resource_type, "_security:not", f"{system}|{code}"))
    return clauses
