"""Group commit for SQLite's single writer.

A SQLite commit writes every page the transaction dirtied to the WAL; for one FHIR create that is
dozens of pages (the resource, its history row and each search index B-tree), which costs more than
all the Python work of the request. Concurrent writers therefore share transactions: a caller queues
its unit of work; whoever holds the writer lock runs every queued unit in one transaction, each inside
its own SAVEPOINT (so one failing unit rolls back only itself), commits once and hands each caller its
own result or exception. A caller returns only after the commit that contains its work, so nothing is
acknowledged before it is committed. With one caller at a time this is exactly a transaction per unit.
"""
from __future__ import annotations

import contextvars
import threading
from collections import deque
from contextlib import AbstractContextManager
from typing import Callable, Generic, TypeVar

from sqlalchemy.engine import Connection

T = TypeVar("T")

MAX_UNITS_PER_COMMIT = 64  # bounds the work a failed commit takes down, and a caller's extra wait


class Unit(Generic[T]):
    __slots__ = ("work", "context", "result", "error", "done")

    def __init__(self, work: Callable[[Connection], T]) -> None:
        self.work = work
        # The unit may run on another caller's thread: it must still see its own request's context
        # (access token, audit collector, request id), never the other caller's.
        self.context = contextvars.copy_context()
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False

    def outcome(self) -> T:
        """What the caller gets once the unit ran: its result, or its exception raised."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    def __init__(self, writer_lock: threading.Lock,
                 open_transaction: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._writer = writer_lock  # also taken by Database.write(): one writer in this process
        self._open_transaction = open_transaction
        self._queue: deque[Unit] = deque()

    def run(self, work: Callable[[Connection], T]) -> T:
        unit: Unit[T] = Unit(work)
        self._queue.append(unit)  # deque appends and pops are atomic
        while not unit.done:
            with self._writer:
                if unit.done:  # the previous holder committed it for us
                    break
                self._run_queued()
        return unit.outcome()

    def run_held(self, units: list[Unit]) -> None:
        """Run `units` in one transaction, each setting its own result or error; the caller holds the
        writer (the event loop's shared commits, loop_commit.py)."""
        if len(units) == 1:
            self._run_alone(units[0])
        else:
            self._run_together(units)

    def _run_queued(self) -> None:
        batch: list[Unit] = []
        while self._queue and len(batch) < MAX_UNITS_PER_COMMIT:
            batch.append(self._queue.popleft())
        if not batch:
            return
        try:
            self.run_held(batch)
        finally:
            for unit in batch:
                unit.done = True

    def _run_alone(self, unit: Unit) -> None:
        try:
            with self._open_transaction() as conn:
                unit.result = unit.context.run(unit.work, conn)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            unit.error = exc

    def _run_together(self, batch: list[Unit]) -> None:
        try:
            with self._open_transaction() as conn:
                cursor = conn.connection.driver_connection.cursor()
                for unit in batch:
                    cursor.execute("SAVEPOINT unit")
                    try:
                        unit.result = unit.context.run(unit.work, conn)
                    except BaseException as exc:  # noqa: BLE001 - this unit only; the others go on
                        unit.error = exc
                        cursor.execute("ROLLBACK TO unit")
                    cursor.execute("RELEASE unit")
                cursor.close()
        except BaseException as exc:  # noqa: BLE001 - the commit failed: nothing of the batch was written
            for unit in batch:
                if unit.error is None:
                    unit.error, unit.result = exc, None
