"""Demo data: the profiles and rules accept every generated course at the API, and reject targeted
breakages of it (422); the read model after loading matches the figures computed from the Bundle;
the `demo-data` command writes deterministic files."""
from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from ipt_fhir.cli import app as cli_app
from ipt_fhir.domain.demo_data import generate_courses
from ipt_fhir.domain.lookup import resources_from_transaction
from ipt_fhir.domain.progress import compute_progress

from .helpers import progress

N = 6


@pytest.fixture(scope="module")
def bundles():
    return list(generate_courses(N, seed=3))


def _first(bundle, rtype, pred=lambda r: True):
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == rtype and pred(entry["resource"]):
            return entry["resource"]
    raise AssertionError(rtype)


def _plan_figures(bundle):
    stored = resources_from_transaction(bundle)
    plan = next(r for r in stored if r["resourceType"] == "CarePlan")
    by = {t: [r for r in stored if r["resourceType"] == t] for t in ("ServiceRequest", "Encounter", "Observation")}
    p = compute_progress(plan, course_requests=by["ServiceRequest"], sessions=by["Encounter"], scores=by["Observation"])
    return p


def test_every_demo_course_is_accepted_and_its_progress_matches(client, bundles):
    for i, bundle in enumerate(bundles):
        r = client.post("/fhir", json=bundle)
        assert r.status_code == 200, (i, r.text[:2000])
        plan_loc = next(e["response"]["location"] for e in r.json()["entry"]
                        if e["response"]["location"].startswith("CarePlan/")
                        or "/CarePlan/" in e["response"]["location"])
        plan_id = plan_loc.split("CarePlan/", 1)[1].split("/", 1)[0]
        figures = progress(client, plan_id)
        expected = _plan_figures(bundle)
        assert figures["sessionsPlanned"] == expected.sessions_planned, i
        assert figures["sessionsAttended"] == expected.sessions_attended, i
        assert figures["sessionsMissed"] == expected.sessions_missed, i
        assert figures["status"] == expected.status, i
        if expected.phq9_latest is not None:
            assert figures["phq9Latest"]["value"] == expected.phq9_latest.value, i


def _break_careplan_category(b):
    _first(b, "CarePlan")["category"] = _first(b, "CarePlan")["category"][:1]


def _break_session_phase_code(b):
    session = _first(b, "Encounter")
    for ext in session["extension"]:
        if ext["url"].endswith("/ipt-phase"):
            ext["valueCoding"]["code"] = "not-a-phase"


def _break_problem_area_code(b):
    cond = _first(b, "Condition", lambda r: "ipt-problem-area-condition" in str(r.get("meta")))
    cond["code"]["coding"][0]["code"] = "loneliness"


def _break_phq9_range(b):
    obs = _first(b, "Observation")
    obs["valueQuantity"]["value"] = 31


def _break_careplan_without_period(b):
    _first(b, "CarePlan").pop("period")


def _break_session_subject(b):
    _first(b, "Encounter")["subject"] = {"reference": "Patient/someone-else"}


BREAKAGES = {f.__name__[7:]: f for f in (_break_careplan_category, _break_session_phase_code, _break_problem_area_code,
                                         _break_phq9_range, _break_careplan_without_period, _break_session_subject)}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_targeted_breakages_of_demo_data_are_rejected(client, bundles, name):
    bundle = copy.deepcopy(bundles[0])
    BREAKAGES[name](bundle)
    r = client.post("/fhir", json=bundle)
    assert r.status_code == 422, r.text[:2000]
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/CarePlan").json()["total"] == 0


def test_demo_data_command_writes_deterministic_bundles(tmp_path):
    runner = CliRunner()
    for folder in ("a", "b"):
        result = runner.invoke(cli_app, ["demo-data", "--patients", "3", "--seed", "7", "--out", str(tmp_path / folder)])
        assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) == 3
    for name in files:
        a = json.loads((tmp_path / "a" / name).read_text())
        assert a["type"] == "transaction"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_demo_data_command_needs_exactly_one_target(tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli_app, ["demo-data", "--patients", "1"]).exit_code != 0
    assert runner.invoke(cli_app, ["demo-data", "--patients", "1", "--out", str(tmp_path),
                                   "--url", "http://x/fhir"]).exit_code != 0


def test_demo_data_command_posts_to_a_server(client, monkeypatch):
    import httpx

    from ipt_fhir.commands import demo

    posted = []

    class _Client:
        def __init__(self, **_kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def post(self, url, content, headers):
            posted.append(url)
            return client.post("/fhir", content=content, headers=headers)

    monkeypatch.setattr(httpx, "Client", _Client)
    result = CliRunner().invoke(cli_app, ["demo-data", "--patients", "2", "--url", "http://testserver/fhir"])
    assert result.exit_code == 0, result.output
    assert posted == ["http://testserver/fhir"] * 2
    assert client.get("/fhir/CarePlan").json()["total"] == 2
    assert demo  # the module the command lives in
