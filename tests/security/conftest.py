"""Fixtures for security tests: own RSA and EC keys, a JWKS file, a token factory, and an app with
IPT_FHIR_AUTH=smart on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings
from tests.conftest import TEST_PROXY

ISSUER = "https://auth.example.org"
AUDIENCE = "https://ipt-fhir.example.org/fhir"
SENSITIVE = "ipt/sensitive.read"


class Keys:
    def __init__(self, tmp: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # not in the JWKS
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa.public_key()))
        rsa_jwk.update(kid="rsa-1", alg="RS256", use="sig")
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec.public_key()))
        ec_jwk.update(kid="ec-1", alg="ES256", use="sig")
        self.path = tmp / "jwks.json"
        self.path.write_text(json.dumps({"keys": [rsa_jwk, ec_jwk]}))

    def token(self, scope: str = "user/*.cruds", *, patient: str | None = None, alg: str = "RS256",
              kid: str | None = None, key=None, iss: str = ISSUER, aud: str = AUDIENCE, exp_in: int = 300,
              nbf_in: int | None = None, sub: str = "user-1", fhir_user: str | None = "Practitioner/pr-1",
              **extra) -> str:
        now = int(time.time())
        claims = {"iss": iss, "aud": aud, "sub": sub, "exp": now + exp_in, "iat": now, "scope": scope,
                  "client_id": "test-app", "jti": str(uuid.uuid4())}
        if nbf_in is not None:
            claims["nbf"] = now + nbf_in
        if patient:
            claims["patient"] = patient
        if fhir_user:
            claims["fhirUser"] = fhir_user
        claims.update(extra)
        if key is None:
            key = self.ec if alg == "ES256" else self.rsa
        if kid is None:
            kid = "ec-1" if alg == "ES256" else "rsa-1"
        return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})

    def headers(self, scope: str = "user/*.cruds", **kw) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(scope, **kw)}"}


@pytest.fixture
def keys(tmp_path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def secure_settings(database_url: str, keys: Keys) -> Settings:
    return Settings(database_url=database_url, auth="smart", jwks=str(keys.path), jwt_issuer=ISSUER,
                    jwt_audience=AUDIENCE, sensitive_scope=SENSITIVE, forwarded_allow_ips=TEST_PROXY)


@pytest.fixture
def secure_client(secure_settings: Settings, database):
    app = create_app(secure_settings, database)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


ADMIN = "user/*.cruds user/AuditEvent.rs " + SENSITIVE


def audit_count(database) -> int:
    import sqlalchemy as sa

    from ipt_fhir.store.tables import resource_table as r

    with database.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(r).where(r.c.resource_type == "AuditEvent")).scalar_one()


def audit_events(database) -> list[dict]:
    """Every stored AuditEvent, oldest first (callers slice off the ones a request added, or take the last)."""
    import sqlalchemy as sa

    from ipt_fhir.fhir.jsonio import load_stored
    from ipt_fhir.store.tables import resource_table as r

    with database.read() as conn:
        rows = conn.execute(sa.select(r.c.content).where(r.c.resource_type == "AuditEvent")
                            .order_by(r.c.last_updated, r.c.id)).all()
    return [load_stored(row[0]) for row in rows]


def create(client, keys, resource: dict, scope: str = ADMIN) -> dict:
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=keys.headers(scope))
    assert r.status_code == 201, r.text
    return r.json()


def patient(client, keys, family: str) -> dict:
    return create(client, keys, {"resourceType": "Patient", "name": [{"family": family, "given": ["Test"]}],
                                 "identifier": [{"system": "urn:test:mrn", "value": f"MRN-{family}"}]})


def observation(client, keys, patient_id: str, **extra) -> dict:
    body = {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
            "subject": {"reference": f"Patient/{patient_id}"}, "valueInteger": 12}
    body.update(extra)
    return create(client, keys, body)
