"""The README's five-minute tour runs as written (curl + jq against a live server) and shows what it says."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ipt_fhir.app import create_app
from tests.live_server import running

README = Path(__file__).resolve().parents[2] / "README.md"


def _tour_script() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Five-minute tour"):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_five_minute_tour_runs_as_written(settings, database):
    missing = [tool for tool in ("curl", "jq", "bash") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} not installed: scripts/test installs them")
        pytest.skip(f"{missing} not installed")
    script = _tour_script()
    assert "127.0.0.1:8080/fhir" in script
    with running(create_app(settings, database)) as base:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c",
                               script.replace("http://127.0.0.1:8080", base)],
                              capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "ipt-standard-individual  Standard individual IPT" in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"name":')]
    figures = {p["name"]: p for p in lines}
    assert figures["sessionsPlanned"]["valueInteger"] == 16
    assert figures["sessionsAttended"]["valueInteger"] == 2
    assert figures["sessionsRemaining"]["valueInteger"] == 14
    assert figures["phq9Baseline"]["part"][0]["valueDecimal"] == 19
    assert figures["phq9Latest"]["part"][0]["valueDecimal"] == 14
    assert figures["phq9Change"]["valueDecimal"] == -5
    assert '["2025-03-03T09:50:00Z",19]\n["2025-03-10T09:50:00Z",14]' in out
