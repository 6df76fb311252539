"""Swagger UI renders the operations list in a real browser (Debian's chromium, headless, offline)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from ipt_fhir.app import create_app
from tests.live_server import running

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--virtual-time-budget=15000"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: CI must run the browser test (scripts/test installs it)")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _dump_dom(browser: str, url: str, profile) -> str:
    done = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=120)
    return done.stdout


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_swagger_ui_renders_the_operations_list(settings, database, tmp_path):
    browser = _chromium()
    with running(create_app(settings, database)) as base:
        for attempt in range(2):  # a loaded machine may dump the DOM before the 1 MB document is rendered
            dom = _dump_dom(browser, f"{base}/docs#/CarePlan", tmp_path / f"profile{attempt}")
            if 'class="opblock ' in dom:
                break
    tags = set(re.findall(r'data-tag="([^"]+)"', dom))
    assert {"CarePlan", "Goal", "Encounter", "Observation"} <= tags, dom[:2000]
    paths = re.findall(r'data-path="([^"]+)"', dom)
    assert "/fhir/CarePlan/{resource_id}" in paths and "/fhir/CarePlan" in paths
    assert dom.count('class="opblock ') >= 8
    assert "Read CarePlan" in dom

