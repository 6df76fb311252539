"""Robustness fixtures: one SQLite-backed app per module (property tests run many examples against it;
a fresh database per example would cost more than the examples), seeded with official R4 examples so
references, searches and history have something to find.

Helpers assert the contract of every answer: never 5xx, and every non-2xx body an OperationOutcome
with at least one issue."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from ipt_fhir.app import create_app
from ipt_fhir.settings import Settings
from ipt_fhir.store.database import Database

from tests.conftest import FIXTURES

EXAMPLES = FIXTURES / "hl7-r4-examples" / "resources"

# Bounded: the whole folder must run in well under two minutes on a loaded two-core machine.
settings.register_profile(
    "robustness", max_examples=60, deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much])



def bounded(max_examples: int):
    """The robustness profile with this many examples; ROBUSTNESS_SCALE=10 explores ten times as far."""
    scale = float(os.environ.get("ROBUSTNESS_SCALE", "1"))
    return settings(settings.get_profile("robustness"), max_examples=max(1, int(max_examples * scale)))


SEED_TYPES = ("Patient", "Practitioner", "Organization", "Encounter", "Condition", "Observation",
              "CarePlan", "Goal", "Location", "RelatedPerson", "CareTeam", "EpisodeOfCare", "Group")


def load_examples() -> list[dict]:
    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        if path.name.split("-")[0] in SEED_TYPES:
            out.append(json.loads(path.read_text()))
    return out


@pytest.fixture(scope="module")
def robust_app(tmp_path_factory, sqlite_template: Path):
    path = tmp_path_factory.mktemp("robust") / "ipt-fhir.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    database = Database(url)
    app = create_app(Settings(database_url=url), database)
    yield app
    database.dispose()


@pytest.fixture(scope="module")
def rclient(robust_app):
    with TestClient(robust_app, base_url="http://testserver") as c:
        for resource in load_examples():  # seed: examples the server accepts (some are refused: fine)
            c.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        yield c


def history_rows(app) -> int:
    with app.state.database.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM resource_history")).scalar_one()


def assert_fhir_answer(response, *, expect_expression: bool = False) -> None:
    """Never a server error; every non-2xx answer an OperationOutcome with issues."""
    request = response.request
    where = f"{request.method} {request.url}"
    assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:2000]}"
    if response.status_code < 400 or request.method == "HEAD":
        return
    assert response.headers.get("content-type", "").startswith("application/fhir+json"), where
    body = orjson.loads(response.content)
    assert body.get("resourceType") == "OperationOutcome", f"{where}: {response.text[:500]}"
    issues = body.get("issue")
    assert isinstance(issues, list) and issues, f"{where}: {response.text[:500]}"
    for issue in issues:
        assert issue.get("severity") in ("fatal", "error", "warning", "information"), issue
        assert isinstance(issue.get("code"), str) and issue["code"], issue
    if expect_expression:
        assert any(issue.get("expression") for issue in issues), \
            f"{where} -> {response.status_code} without FHIRPath expression: {response.text[:800]}"
