"""Background WAL checkpoints for SQLite.

Left to itself, SQLite checkpoints inside the commit that pushes the WAL past its limit: that write
request then copies megabytes into the database file and waits for an fsync, a latency spike of tens
of milliseconds while every other writer queues behind it. A thread of ours checkpoints instead,
often and in small steps, in PASSIVE mode (it never waits for, or blocks, readers and the writer).
The writer's own auto-checkpoint stays as a backstop should this thread fall behind.
"""
from __future__ import annotations

import logging
import threading

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.25


class Checkpointer:
    def __init__(self, engine: Engine, interval: float = INTERVAL_SECONDS) -> None:
        self._engine = engine
        self._interval = interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Called after commits: starts the thread on first use, so a database nobody writes to
        (a read-only tool, most test fixtures) never gets one."""
        if self._thread is None and not self._stopped.is_set():
            with self._lock:
                if self._thread is None and not self._stopped.is_set():
                    self._thread = threading.Thread(target=self._run, name="ipt-fhir-sqlite-checkpoint",
                                                    daemon=True)
                    self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        raw = None
        try:
            while not self._stopped.wait(self._interval):
                try:
                    if raw is None:
                        raw = self._engine.raw_connection()
                    cursor = raw.cursor()
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cursor.close()
                except Exception:  # noqa: BLE001 - the writer's auto-checkpoint still bounds the WAL
                    log.warning("background WAL checkpoint failed", exc_info=True)
                    if raw is not None:
                        raw.invalidate()
                        raw = None
        finally:
            if raw is not None:
                raw.close()
