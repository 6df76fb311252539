"""Bearer tokens: only well-signed, current tokens for this audience and issuer get in."""
from __future__ import annotations

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import AUDIENCE, ISSUER


def test_request_without_token_gets_401_with_bearer_challenge(secure_client):
    r = secure_client.get("/fhir/Patient")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


def test_valid_rs256_and_es256_tokens_are_accepted(secure_client, keys):
    for alg in ("RS256", "ES256"):
        r = secure_client.get("/fhir/Patient", headers=keys.headers("user/Patient.rs", alg=alg))
        assert r.status_code == 200, (alg, r.text)


def test_token_signed_by_a_key_not_in_the_jwks_is_refused(secure_client, keys):
    forged = keys.token("user/*.cruds", key=keys.other_rsa, kid="rsa-1")
    r = secure_client.get("/fhir/Patient", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_tampered_token_is_refused(secure_client, keys):
    token = keys.token("user/Patient.rs")
    head, payload, sig = token.split(".")
    other = keys.token("user/*.cruds").split(".")[1]
    r = secure_client.get("/fhir/Patient", headers={"Authorization": f"Bearer {head}.{other}.{sig}"})
    assert r.status_code == 401


def test_expired_token_is_refused(secure_client, keys):
    r = secure_client.get("/fhir/Patient", headers=keys.headers("user/*.rs", exp_in=-600))
    assert r.status_code == 401
    assert "expired" in r.json()["issue"][0]["diagnostics"]


def test_token_expired_within_clock_skew_is_accepted(secure_client, keys):
    r = secure_client.get("/fhir/Patient", headers=keys.headers("user/*.rs", exp_in=-5))
    assert r.status_code == 200


def test_token_not_yet_valid_is_refused(secure_client, keys):
    r = secure_client.get("/fhir/Patient", headers=keys.headers("user/*.rs", nbf_in=600))
    assert r.status_code == 401


def test_wrong_audience_is_refused(secure_client, keys):
    r = secure_client.get("/fhir/Patient", headers=keys.headers("user/*.rs", aud="https://other.example/fhir"))
    assert r.status_code == 401
    assert "aud" in r.json()["issue"][0]["diagnostics"]


def test_wrong_issuer_is_refused(secure_client, keys):
    r = secure_client.get("/fhir/Patient", headers=keys.headers("user/*.rs", iss="https://evil.example"))
    assert r.status_code == 401


def test_hs256_and_none_algorithms_are_refused_without_a_development_secret(secure_client, keys):
    import time

    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60, "scope": "user/*.cruds"}
    hs = jwt.encode(claims, "secret-secret-secret-secret-secret!", algorithm="HS256")
    none = jwt.encode(claims, None, algorithm="none")
    for token in (hs, none):
        r = secure_client.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


def test_garbage_and_non_bearer_credentials_are_refused(secure_client):
    for value in ("Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer "):
        r = secure_client.get("/fhir/Patient", headers={"Authorization": value})
        assert r.status_code == 401, value


def test_unknown_kid_is_refused(secure_client, keys):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    r = secure_client.get("/fhir/Patient", headers=keys.headers("user/*.rs", key=key, kid="nope"))
    assert r.status_code == 401


def test_metadata_and_smart_configuration_are_public(secure_client):
    meta = secure_client.get("/fhir/metadata")
    assert meta.status_code == 200
    security = meta.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    for path in ("/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"):
        r = secure_client.get(path)
        assert r.status_code == 200
        conf = r.json()
        assert conf["issuer"] == ISSUER
        assert "permission-v2" in conf["capabilities"]
        assert "patient/*.rs" in conf["scopes_supported"]


def test_smart_configuration_advertises_only_the_flows_whose_endpoints_are_configured(secure_settings):
    from ipt_fhir.api.security_routes import smart_configuration

    bare = smart_configuration(secure_settings.model_copy(update={"smart_authorize_url": None,
                                                                   "smart_token_url": None}))
    assert "token_endpoint" not in bare and "grant_types_supported" not in bare
    assert not {"launch-standalone", "sso-openid-connect", "client-public"} & set(bare["capabilities"])
    backend = smart_configuration(secure_settings.model_copy(update={"smart_authorize_url": None,
                                                                      "smart_token_url": "https://auth/token"}))
    assert backend["grant_types_supported"] == ["client_credentials"]
    assert "launch-standalone" not in backend["capabilities"]
    full = smart_configuration(secure_settings.model_copy(update={"smart_authorize_url": "https://auth/authorize",
                                                                   "smart_token_url": "https://auth/token"}))
    assert full["grant_types_supported"] == ["authorization_code", "client_credentials"]
    assert {"launch-standalone", "client-confidential-asymmetric"} <= set(full["capabilities"])
    assert full["code_challenge_methods_supported"] == ["S256"]
