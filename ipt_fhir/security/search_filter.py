"""Access restrictions turned into search criteria, so that counts, paging and totals stay right:
patient/ scopes add the token patient's compartment to every searched type, and tokens without the
sensitive scope exclude PSYTHPN / R labelled resources (`_security:not=…`)."""
from __future__ import annotations

from ipt_fhir.fhir.search.parser import Clause, Parser

from . import context, guard
from .labels import SENSITIVE_LABELS


def restrict(types: list[str], base_url: str, *, compartment_patient: str | None = None
             ) -> tuple[list[str], dict[str, list[Clause]]]:
    """-> (the types this token may search, extra AND clauses per type)."""
    ctx = context.current()
    if ctx.unrestricted:
        return types, {}
    from ipt_fhir.services.search import _compartment_clause

    allowed, confined, hide_sensitive = guard.search_confinement(types)
    if confined and compartment_patient is not None and compartment_patient != ctx.patient:
        raise guard.forbidden("patient/ scopes are confined to the compartment of the token's patient")
    parser = Parser(base_url)
    extra: dict[str, list[Clause]] = {}
    for t in allowed:
        clauses = []
        if t == "Patient" and t in confined:
            # A patient/ token sees its own Patient only (guard: compartment.patients_of, the route's
            # check of Patient/[id]); the compartment's Patients that link to it are not its own.
            clauses.append(Clause("id", "_id", values=[confined[t]]))
        elif t in confined:
            clauses.append(_compartment_clause(t, confined[t]))
        if hide_sensitive:
            for system, code in SENSITIVE_LABELS:
                clauses.append(parser.parse(t, "_security:not", f"{system}|{code}"))
        if clauses:
            extra[t] = clauses
    return allowed, extra
