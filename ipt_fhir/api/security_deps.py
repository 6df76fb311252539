"""Authentication and the coarse authorization of each request (a router dependency).

Every /fhir route except /metadata depends on `authorize`: it authenticates the bearer token (401 with
WWW-Authenticate), sets the request's AccessContext, and refuses early (403) what the token's scopes can
never allow for the route's interaction and type. Per-resource checks (compartment, labels, transaction
entries, includes, history entries) are made by the services through ipt_fhir.security.guard.
"""
from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ipt_fhir.fhir.outcome import FHIRError, error
from ipt_fhir.fhir.resource_types import REST_TYPES
from ipt_fhir.observability import interaction_of, route_template
from ipt_fhir.security import audit, context, guard
from ipt_fhir.security.context import AccessContext
from ipt_fhir.security.scopes import ScopeSet
from ipt_fhir.security.tokens import TokenError, TokenValidator

# Interactions as observability.interaction_of names them from the route (for metrics and logs), in the
# words of the scope checks and the audit.
_GUARD_NAMES = {"search-compartment": "search-type", "transaction": "batch"}
_WRITES = {"create", "update", "patch", "delete"}
_REALM = 'Bearer realm="ipt-fhir"'


def unauthorized(description: str) -> FHIRError:
    err = FHIRError(401, [error("login", f"Authentication failed: {description}")])
    safe = description.replace('"', "'")
    err.headers["WWW-Authenticate"] = f'{_REALM}, error="invalid_token", error_description="{safe}"'
    return err


def _classify(request: Request) -> tuple[str, str | None, str | None]:
    named = interaction_of(request.method, route_template(request.scope.get("route")))
    interaction = _GUARD_NAMES.get(named, named)
    params = request.path_params
    resource_type = params.get("resource_type")
    resource_id = params.get("resource_id") or params.get("patient_id")
    if named == "search-compartment":
        resource_id = None  # Patient/[id]/[type] searches [type]; the patient is the compartment
    elif interaction == "operation":
        # /fhir/[type]/[id]/$op, /fhir/[type]/$op, /fhir/$op: type and id from the path.
        parts = [p for p in request.url.path.split("/fhir", 1)[-1].split("/") if p]
        resource_type = parts[0] if parts and parts[0] in REST_TYPES else None
        resource_id = parts[1] if resource_type and len(parts) > 2 and not parts[1].startswith("$") else None
    return interaction, resource_type, resource_id


def _validator(request: Request) -> TokenValidator:
    state = request.app.state
    validator = getattr(state, "token_validator", None)
    if validator is None:
        validator = state.token_validator = TokenValidator(state.settings)
    return validator


async def authorize(request: Request) -> None:
    settings = request.app.state.settings
    interaction, resource_type, resource_id = _classify(request)
    collected = audit.collector()
    if collected is not None:
        collected.interaction, collected.resource_type, collected.resource_id = interaction, resource_type, resource_id
    if resource_type == "AuditEvent" and interaction in _WRITES:
        raise guard.audit_write_refused()
    if settings.auth == "off":
        context.set_current(None)
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        err = FHIRError(401, [error("login", "This server needs an OAuth2 bearer access token (SMART on FHIR)")])
        err.headers["WWW-Authenticate"] = _REALM
        raise err
    validator = _validator(request)
    try:
        if validator.keys is not None and type(validator.keys).__name__ == "_UrlJWKS":
            claims = await run_in_threadpool(validator.validate, token.strip())
        else:
            claims = validator.validate(token.strip())
    except TokenError as exc:
        raise unauthorized(str(exc)) from None
    raw = claims.raw
    scopes = ScopeSet(claims.scopes)
    patient = raw.get("patient")
    ctx = AccessContext(
        unrestricted=False, subject=raw.get("sub"), client_id=raw.get("client_id") or raw.get("azp"),
        issuer=raw.get("iss"), fhir_user=raw.get("fhirUser") if isinstance(raw.get("fhirUser"), str) else None,
        patient=str(patient) if patient else None, scopes=scopes,
        sensitive=settings.sensitive_scope in scopes, token_id=raw.get("jti"),
    )
    context.set_current(ctx)
    if collected is not None:
        collected.access = ctx
    _coarse_check(ctx, interaction, resource_type, resource_id, request)


def _coarse_check(ctx: AccessContext, interaction: str, resource_type: str | None, resource_id: str | None,
                  request: Request) -> None:
    if interaction == "batch":
        return  # each entry is checked by the services it runs through
    path = request.url.path
    if "/$export" in path or "/$import" in path:
        # Bulk jobs run outside the request, where per-resource checks cannot follow them: only tokens
        # with unconfined wildcard access (and the sensitive scope for exports) may start or poll them.
        needed = ("read", "search") if "/$export" in path else ("create", "update")
        if any(ctx.scopes.level(i, "Patient") in (None, "patient") for i in needed) or \
                not any(s.resource_type == "*" and s.level != "patient" for s in ctx.scopes.scopes) or \
                ("/$export" in path and not ctx.sensitive):
            raise guard.forbidden("Bulk data needs user/ or system/ wildcard scopes (*.rs for $export, with the "
                                  "sensitive scope; *.cu for $import)")
        return
    # Across types (Patient/[id]/* too): the search applies per type what the scopes allow, and refuses
    # another patient's compartment to patient/ scopes (security.search_filter).
    if interaction in ("search-system", "history-system") or (resource_type is None and interaction == "search-type"):
        if not ctx.scopes.any_for("search"):
            raise guard.forbidden("The access token has no search scope")
        return
    if interaction == "operation":
        guard.require_operation(resource_type, resource_id, request.app.state.database)
        return
    patient = guard.require(interaction, resource_type)
    compartment_patient = request.path_params.get("patient_id")
    if patient is not None:
        if compartment_patient is not None and compartment_patient != patient:
            raise guard.forbidden("patient/ scopes are confined to the compartment of the token's patient")
        if resource_type == "Patient" and resource_id is not None and resource_id != patient:
            raise guard.forbidden("patient/ scopes are confined to the compartment of the token's patient")
