"""Scopes x interactions: each interaction is allowed exactly when a scope grants its SMART v2 letter on
the type (v1 .read/.write mapped to rs/cud), refused with 403 otherwise, 401 without a token; and every
one of these accesses leaves an AuditEvent."""
from __future__ import annotations

import pytest

from .conftest import audit_count, observation, patient

# interaction -> (SMART letter, request builder)
INTERACTIONS = {
    "read": "r", "vread": "r", "history-instance": "r", "search": "s", "history-type": "s",
    "create": "c", "update": "u", "patch": "u", "delete": "d",
}
SCOPES = {
    "user/Observation.rs": "rs",
    "user/Observation.cruds": "cruds",
    "user/Observation.read": "rs",  # v1
    "user/Observation.write": "cud",  # v1
    "user/*.r": "r",
    "system/Observation.cu": "cu",
    "user/Patient.cruds": "",  # another type only
    "patient/Observation.rs": "rs",  # in the token patient's compartment
    "openid fhirUser": "",
}


def _do(client, interaction: str, obs: dict, patient_id: str, headers: dict):
    oid = obs["id"]
    if interaction == "read":
        return client.get(f"/fhir/Observation/{oid}", headers=headers)
    if interaction == "vread":
        return client.get(f"/fhir/Observation/{oid}/_history/1", headers=headers)
    if interaction == "history-instance":
        return client.get(f"/fhir/Observation/{oid}/_history", headers=headers)
    if interaction == "history-type":
        return client.get("/fhir/Observation/_history", headers=headers)
    if interaction == "search":
        return client.get(f"/fhir/Observation?subject=Patient/{patient_id}", headers=headers)
    if interaction == "create":
        body = {k: v for k, v in obs.items() if k not in ("id", "meta")}
        return client.post("/fhir/Observation", json=body, headers=headers)
    if interaction == "update":
        body = dict(obs, valueInteger=13)
        return client.put(f"/fhir/Observation/{oid}", json=body, headers=headers)
    if interaction == "patch":
        return client.patch(f"/fhir/Observation/{oid}", content=b'[{"op":"replace","path":"/valueInteger","value":14}]',
                            headers={**headers, "Content-Type": "application/json-patch+json"})
    if interaction == "delete":
        return client.delete(f"/fhir/Observation/{oid}", headers=headers)
    raise AssertionError(interaction)


@pytest.mark.parametrize("scope", list(SCOPES))
def test_scope_matrix(secure_client, keys, database, scope):
    c = secure_client
    pat = patient(c, keys, "Matrix")
    for interaction, letter in INTERACTIONS.items():
        obs = observation(c, keys, pat["id"])
        before = audit_count(database)
        r = _do(c, interaction, obs, pat["id"], keys.headers(scope, patient=pat["id"]))
        allowed = letter in SCOPES[scope]
        if allowed:
            assert r.status_code < 300, (scope, interaction, r.status_code, r.text)
        else:
            assert r.status_code == 403, (scope, interaction, r.status_code, r.text)
            assert r.json()["issue"][0]["code"] == "forbidden"
        assert audit_count(database) > before, (scope, interaction, "no audit row")
        unauthenticated = _do(c, interaction, obs, pat["id"], {})
        assert unauthenticated.status_code == 401, (interaction, unauthenticated.text)


def test_refused_request_is_audited_with_a_failure_outcome(secure_client, keys, database):
    pat = patient(secure_client, keys, "Refused")
    r = secure_client.get(f"/fhir/Patient/{pat['id']}", headers=keys.headers("user/Observation.rs"))
    assert r.status_code == 403
    refused = [e for e in _events(database) if e.get("outcome") == "4"]
    assert refused
    assert any(ent["what"].get("reference") == f"Patient/{pat['id']}" for e in refused for ent in e.get("entity", []))


def _events(database):
    from .conftest import audit_events

    return audit_events(database)
