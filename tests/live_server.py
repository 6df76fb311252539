"""A real uvicorn server on a free loopback port, in a background thread, for tests that need true
concurrency (many simultaneous connections) rather than the in-process TestClient; with the options
`ipt-fhir serve` gives uvicorn. ServedProcess: `ipt-fhir serve` itself, in a process of its own."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import httpx
import uvicorn

from ipt_fhir.observability import SERVER_OPTIONS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **SERVER_OPTIONS))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def server_env(**settings: str) -> dict[str, str]:
    """The environment of a served process: this one's without any IPT_FHIR_/PROMETHEUS_ setting of the
    developer's shell (IPT_FHIR_AUTH=smart there would make every request a 401), plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IPT_FHIR_", "PROMETHEUS_"))}
    return {**env, **settings}


class ServedProcess:
    """`ipt-fhir serve --workers N` on a free loopback port, its output in `log` (whose folder is its
    working directory)."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ipt_fhir.cli", "serve", "--workers", str(workers), "--port", str(self.port)],
            env={**env, "IPT_FHIR_PORT": str(self.port)}, stdout=self._log_file, stderr=subprocess.STDOUT,
            cwd=log.parent)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready: {self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then SIGKILL after `timeout`; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()
        return self.process.returncode

    def stop_during(self, request: Callable[[], httpx.Response], after: float = 0.2
                    ) -> tuple[int, httpx.Response, float]:
        """`request()` sent from another thread, and SIGTERM `after` seconds later, while the server handles
        it: (exit code, its response, seconds from the signal to that response). Its HTTP error is raised."""
        answered: list[tuple[httpx.Response | httpx.HTTPError, float]] = []

        def send() -> None:
            try:
                answered.append((request(), time.monotonic()))
            except httpx.HTTPError as exc:
                answered.append((exc, time.monotonic()))

        thread = threading.Thread(target=send)
        thread.start()
        time.sleep(after)
        signalled = time.monotonic()
        code = self.stop()
        thread.join(60)
        assert answered, "the request neither got an answer nor failed"
        response, at = answered[0]
        if isinstance(response, httpx.HTTPError):
            raise response
        return code, response, at - signalled
