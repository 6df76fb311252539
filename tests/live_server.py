"""A real uvicorn server on a free loopback port, in a background thread, for tests that need true
concurrency (many simultaneous connections) rather than the in-process TestClient; with the options
`ipt-fhir serve` gives uvicorn."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

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
