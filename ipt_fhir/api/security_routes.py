"""GET /fhir/.well-known/smart-configuration (and at the server root): SMART App Launch discovery
(http://hl7.org/fhir/smart-app-launch/conformance.html). Public, like /metadata."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ipt_fhir.fhir.jsonio import dump_json

router = APIRouter()

SCOPES_SUPPORTED = [
    "patient/*.rs", "patient/*.cruds", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
    "patient/*.read", "patient/*.write", "user/*.read", "user/*.write", "system/*.read", "system/*.write",
    "user/AuditEvent.rs", "system/AuditEvent.rs", "launch/patient", "openid", "fhirUser", "offline_access",
]


def smart_configuration(settings) -> dict:  # noqa: ANN001 - Settings
    """What this server and the authorization server configured beside it (IPT_FHIR_SMART_AUTHORIZE_URL,
    IPT_FHIR_SMART_TOKEN_URL) support. The authorization server is another service: a flow whose endpoint
    is not configured is not advertised (SMART App Launch requires token_endpoint; without it a client
    learns here that no flow is offered, not one that fails)."""
    interactive = settings.smart_authorize_url is not None and settings.smart_token_url is not None
    grants = ["authorization_code"] if interactive else []
    if settings.smart_token_url:
        grants.append("client_credentials")
    capabilities = ["permission-patient", "permission-user", "permission-v1", "permission-v2"]
    if interactive:
        capabilities += ["launch-standalone", "client-public", "context-standalone-patient", "sso-openid-connect"]
    if settings.smart_token_url:
        capabilities.append("client-confidential-asymmetric")
    doc: dict = {
        "issuer": settings.jwt_issuer,
        "jwks_uri": settings.jwks if settings.jwks and settings.jwks.startswith("http") else None,
        "authorization_endpoint": settings.smart_authorize_url,
        "token_endpoint": settings.smart_token_url,
        "grant_types_supported": grants or None,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"]
        if settings.smart_token_url else None,
        "scopes_supported": SCOPES_SUPPORTED + [settings.sensitive_scope],
        "response_types_supported": ["code"] if interactive else None,
        "code_challenge_methods_supported": ["S256"] if interactive else None,
        "capabilities": sorted(capabilities),
    }
    return {k: v for k, v in doc.items() if v is not None}


@router.get("/fhir/.well-known/smart-configuration", tags=["capabilities"], summary="SMART configuration")
@router.get("/.well-known/smart-configuration", include_in_schema=False)
def smart_config(request: Request) -> Response:
    return Response(dump_json(smart_configuration(request.app.state.settings)), media_type="application/json")


def rest_security(settings) -> dict:  # noqa: ANN001 - Settings
    """CapabilityStatement.rest.security (SMART App Launch: the SMART-on-FHIR service coding and the
    oauth-uris extension)."""
    if settings.auth != "smart":
        return {"cors": bool(settings.cors_origins.strip()),
                "description": "Authorization is OFF: development server on localhost only (IPT_FHIR_AUTH=off)."}
    uris = [{"url": "authorize", "valueUri": settings.smart_authorize_url},
            {"url": "token", "valueUri": settings.smart_token_url}]
    security: dict = {
        "cors": bool(settings.cors_origins.strip()),
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 bearer tokens (SMART App Launch v1/v2 scopes)"}],
        "description": (f"Bearer JWTs from {settings.jwt_issuer}, audience {settings.jwt_audience}. SMART v2 "
                        f"(patient/CarePlan.rs) and v1 (.read/.write) scopes; patient/ scopes confine requests to "
                        f"the token patient's compartment. Resources labelled PSYTHPN or R also need the scope "
                        f"{settings.sensitive_scope}. Reading AuditEvent needs a scope naming AuditEvent."),
    }
    present = [u for u in uris if u["valueUri"]]
    if present:
        security["extension"] = [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": present}]
    return security


def rest_security_json(settings) -> str:  # noqa: ANN001 - Settings
    return dump_json(rest_security(settings)).decode()
