"""The REST front door (api/rest_dispatch.py) takes exactly the requests FastAPI's routing would send to
the same handlers, and answers them exactly as FastAPI would.

Each request is sent twice, to two apps on identical databases: one as built, one with a dependency
override set, under which the front door steps aside and FastAPI routes everything. The handler
(scope["endpoint"]), the route the access log and metrics name (scope["route"]), the status and, for
answers without server-assigned ids or times, the body must be the same."""
from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from ipt_fhir.api import rest_routes, search_routes
from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings
from ipt_fhir.store.database import Database


def _unused_dependency() -> None:  # only its presence in dependency_overrides matters
    return None


class _Recorder:
    """Pure ASGI around the app: keeps the scope of the last request, as routing left it."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.scope: dict = {}

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http":
            self.scope = scope
        await self.app(scope, receive, send)


def _client(tmp_path, sqlite_template, name: str, settings_extra: dict, routed_by_fastapi: bool):
    path = tmp_path / f"{name}.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    settings = Settings(database_url=url, bulk_dir=str(tmp_path / f"bulk-{name}"), **settings_extra)
    app = create_app(settings, Database(url))
    if routed_by_fastapi:
        app.dependency_overrides[_unused_dependency] = _unused_dependency
    recorder = _Recorder(app)
    return recorder, TestClient(recorder, base_url="http://testserver", follow_redirects=False)


@pytest.fixture
def pair(tmp_path, sqlite_template):
    clients = []
    recorders = []
    for name, routed_by_fastapi in (("front", False), ("fastapi", True)):
        recorder, client = _client(tmp_path, sqlite_template, name, {}, routed_by_fastapi)
        client.__enter__()
        clients.append(client)
        recorders.append(recorder)
    # The same starting data in both: a patient with a known id, in version 1.
    for client in clients:
        assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "active": True,
                                                   "identifier": [{"system": "urn:t", "value": "1"}]}).status_code == 201
    yield list(zip(recorders, clients))
    for client in clients:
        client.__exit__(None, None, None)


PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": "2"}]}
PATCH = [{"op": "replace", "path": "/active", "value": False}]
JSON_PATCH = {"Content-Type": "application/json-patch+json"}

FRONT_DOOR = [  # (method, path, body, headers, handler)
    ("GET", "/fhir/Patient/p1", None, {}, rest_routes.read),
    ("HEAD", "/fhir/Patient/p1", None, {}, rest_routes.read),
    ("GET", "/fhir/Patient/nope", None, {}, rest_routes.read),
    ("GET", "/fhir/Patient/p1?_elements=active&_pretty=true", None, {}, rest_routes.read),
    ("GET", "/fhir/Patient/p1", None, {"Accept": "application/fhir+xml"}, rest_routes.read),
    ("GET", "/fhir/Patient/p1/_history/1", None, {}, rest_routes.vread),
    ("GET", "/fhir/Patient/p1/_history/9", None, {}, rest_routes.vread),
    ("POST", "/fhir/Patient", PATIENT, {}, rest_routes.create),
    ("POST", "/fhir/Patient", PATIENT, {"Prefer": "return=minimal"}, rest_routes.create),
    ("POST", "/fhir/Patient", {"resourceType": "Observation"}, {}, rest_routes.create),
    ("POST", "/fhir/Patient", b"{not json", {"Content-Type": "application/fhir+json"}, rest_routes.create),
    ("POST", "/fhir/Patient", b"<Patient/>", {"Content-Type": "application/fhir+xml"}, rest_routes.create),
    ("POST", "/fhir/AuditEvent", {"resourceType": "AuditEvent"}, {}, rest_routes.create),
    ("PUT", "/fhir/Patient/p1", {"resourceType": "Patient", "id": "p1"}, {"If-Match": 'W/"7"'}, rest_routes.update),
    ("PUT", "/fhir/Patient/p2", {"resourceType": "Patient", "id": "p2"}, {"Prefer": "return=minimal"},
     rest_routes.update),
    ("PUT", "/fhir/Patient?identifier=urn:t|1", {"resourceType": "Patient", "id": "p1"},
     {"Prefer": "return=OperationOutcome"}, rest_routes.conditional_update),
    ("PATCH", "/fhir/Patient/p1", PATCH, {**JSON_PATCH, "If-Match": 'W/"1"', "Prefer": "return=minimal"},
     rest_routes.patch),
    ("PATCH", "/fhir/Patient?identifier=urn:t|nobody", PATCH, JSON_PATCH, rest_routes.conditional_patch),
    ("DELETE", "/fhir/Patient/gone", None, {}, rest_routes.delete),
    ("DELETE", "/fhir/Patient?identifier=urn:t|nobody", None, {"Prefer": "return=OperationOutcome"},
     rest_routes.conditional_delete),
    ("GET", "/fhir/Patient?identifier=urn:t|1&_summary=count", None, {}, search_routes.type_search),
    ("HEAD", "/fhir/Patient", None, {}, search_routes.type_search),
    ("GET", "/fhir/Patient?_count=x", None, {"Prefer": "handling=strict"}, search_routes.type_search),
    ("GET", "/fhir/StructureDefinition/not-ours", None, {}, rest_routes.read),
    ("GET", "/fhir/StructureDefinition/ipt-symptom-score", None, {}, rest_routes.read),  # the server's own: stored
    ("GET", "/fhir/PlanDefinition/ipt-standard-individual/_history/1", None, {}, rest_routes.vread),
    ("GET", "/fhir/CodeSystem", None, {}, search_routes.type_search),
    ("GET", "/fhir/Patient/p1/", None, {}, rest_routes.read),  # routed again without the slash (trailing_slash.py)
    ("PUT", "/fhir/PlanDefinition", {"resourceType": "PlanDefinition"}, {}, rest_routes.conditional_update),
]

FASTAPI_ROUTED = [  # (method, path, body, headers): shapes and names the front door leaves alone
    ("GET", "/fhir/Patient/p1/$everything", None, {}),
    ("GET", "/fhir/Patient/$everything", None, {}),
    ("GET", "/fhir/_history", None, {}),
    ("GET", "/fhir/Patient/_history", None, {}),
    ("GET", "/fhir/Patient/p1/_history", None, {}),
    ("POST", "/fhir/Patient/_search", b"identifier=urn:t|1", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("GET", "/fhir", None, {}),
    ("GET", "/fhir/metadata", None, {}),
    ("GET", "/fhir/.well-known/smart-configuration", None, {}),
    ("PUT", "/fhir/PlanDefinition/ipt-standard-individual", {"resourceType": "PlanDefinition"}, {}),  # refused
    ("DELETE", "/fhir/CodeSystem/ipt-phase", None, {}),  # writes to the server's own conformance resources
    ("GET", "/fhir/CarePlan/x/$ipt-progress", None, {}),
    ("POST", "/fhir/Patient/$validate", PATIENT, {}),
    ("POST", "/fhir/Patient/p1/$validate", PATIENT, {}),
    ("POST", "/fhir/Patient/p1", PATIENT, {}),  # 405
    ("PUT", "/fhir/Patient/p1/_history/1", PATIENT, {}),  # 405
    ("GET", "/fhir/Patient/_nope", None, {}),  # unknown route: 404
    ("GET", "/fhir/Patient/$nope", None, {}),
    ("GET", "/fhir/Patient/p1/x", None, {}),
    ("GET", "/fhir/Foo/1", None, {}),  # not a resource type: the read handler's 404, through FastAPI
    ("POST", "/fhir/Foo", PATIENT, {}),
    ("GET", "/fhir/", None, {}),
    ("PUT", "/fhir/$import", PATIENT, {}),
]


def _send(client: TestClient, method: str, path: str, body, headers: dict):  # noqa: ANN001
    if isinstance(body, bytes):
        return client.request(method, path, content=body, headers=headers)
    return client.request(method, path, json=body, headers=headers)


def _comparable(response) -> tuple:  # noqa: ANN001
    volatile = {"date", "etag", "last-modified", "location", "x-request-id", "content-length"}
    headers = sorted((k, v) for k, v in response.headers.items() if k not in volatile)
    body = response.content if response.status_code >= 300 else None  # errors carry no ids or times
    return response.status_code, headers, body


@pytest.mark.parametrize(("method", "path", "body", "headers", "handler"), FRONT_DOOR,
                         ids=[f"{m} {p}" for m, p, *_ in FRONT_DOOR])
def test_the_front_door_takes_the_requests_fastapi_sends_to_the_same_handler(pair, method, path, body, headers,
                                                                             handler):
    (front, front_client), (routed, routed_client) = pair
    ours = _send(front_client, method, path, body, headers)
    theirs = _send(routed_client, method, path, body, headers)
    assert "ipt_fhir.rest_handler" in front.scope, "the front door did not take it"
    assert "ipt_fhir.rest_handler" not in routed.scope
    assert front.scope["endpoint"] is routed.scope["endpoint"] is handler
    assert front.scope["route"] is routed.scope["route"]
    assert front.scope["path_params"] == routed.scope["path_params"]
    assert _comparable(ours) == _comparable(theirs)


@pytest.mark.parametrize(("method", "path", "body", "headers"), FASTAPI_ROUTED,
                         ids=[f"{m} {p}" for m, p, *_ in FASTAPI_ROUTED])
def test_other_requests_go_through_fastapi_routing(pair, method, path, body, headers):
    (front, front_client), (routed, routed_client) = pair
    ours = _send(front_client, method, path, body, headers)
    theirs = _send(routed_client, method, path, body, headers)
    assert "ipt_fhir.rest_handler" not in front.scope
    assert front.scope.get("endpoint") is routed.scope.get("endpoint")
    assert front.scope.get("route") is routed.scope.get("route")
    assert _comparable(ours) == _comparable(theirs)
    assert not 300 <= ours.status_code < 400, ours.headers.get("location")  # no redirect under /fhir
    if ours.status_code >= 400:
        assert ours.json()["resourceType"] == "OperationOutcome"


def test_errors_are_operation_outcomes_with_security_headers(pair):
    (_, client), _ = pair
    r = client.post("/fhir/Patient", content=b"{not json", headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"]


def test_authorization_is_checked_as_on_the_fastapi_routes(tmp_path, sqlite_template):
    from tests.security.conftest import AUDIENCE, ISSUER, Keys

    keys = Keys(tmp_path)
    smart = {"auth": "smart", "jwks": str(keys.path), "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    pairs = [_client(tmp_path, sqlite_template, name, smart, routed) for name, routed in (("a", False), ("b", True))]
    requests = [
        ("GET", "/fhir/Patient/p1", {}),  # no token: 401 with WWW-Authenticate
        ("GET", "/fhir/Patient/p1", {"Authorization": "Bearer nonsense"}),
        ("POST", "/fhir/Patient", keys.headers("user/Patient.rs")),  # no create scope: 403
        ("GET", "/fhir/Observation", keys.headers("user/Patient.rs")),
        ("GET", "/fhir/Patient/other", keys.headers("patient/*.rs", patient="p1")),  # outside the compartment
        ("DELETE", "/fhir/Patient/p1", keys.headers("user/*.cruds")),
        ("GET", "/fhir/Patient/p1", keys.headers("user/*.cruds")),
    ]
    answers = []
    for recorder, client in pairs:
        with client:
            answers.append([_comparable(_send(client, m, p, PATIENT if m == "POST" else None, h))
                            for m, p, h in requests])
    assert answers[0] == answers[1]
    assert [a[0] for a in answers[0]] == [401, 401, 403, 403, 403, 204, 404]


def test_dependency_overrides_are_honoured(tmp_path, sqlite_template):
    """Under an override the front door steps aside: the overridden dependency is what the route gets."""
    from ipt_fhir.api.deps import get_resource_service

    recorder, client = _client(tmp_path, sqlite_template, "o", {}, False)

    class Refusing:
        def __init__(self, real) -> None:  # noqa: ANN001
            self.db = real.db

        def read(self, *_args):  # noqa: ANN002
            from ipt_fhir.fhir.outcome import FHIRError

            raise FHIRError.of(418, "processing", "overridden")

    with client:
        real = recorder.app.state.resource_service
        recorder.app.dependency_overrides[get_resource_service] = lambda: Refusing(real)
        assert client.get("/fhir/Patient/p1").status_code == 418
        recorder.app.dependency_overrides.clear()
        assert client.get("/fhir/Patient/p1").status_code == 404
