"""SQLite: small writes on the event loop share commits.

A SQLite commit is the largest single cost of a create: it appends a dozen WAL frames (each 3 KB
resource fills a table page of its own, in `resource` and in `resource_history`, and every index gets
a leaf); profiled in-process, about 90 µs, as much as the rest of the unit's database work. Requests whose small writes
reach the store within a few turns of the event loop (under concurrent load, most of them) therefore
share one: each queues its unit of work and awaits; a callback scheduled by the first waits while more
arrive (_gather), then runs them all in one transaction, each inside its own SAVEPOINT (GroupCommit.run_held, as thread writers do), commits
once and wakes each request with its own result or exception. A request is answered only after the
commit that holds its work; one request alone is a transaction of its own, as before.

Whether the loop may write at all is Database.try_inline_writer's decision (the writer must be free
and no disk sync possible, see checkpoint.py). When it may not for a while, every queued request
stores its unit from a thread instead (`run` answers NOT_RUN), where group commit batches them with
other threads'.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable, Generic, TypeVar

from sqlalchemy.engine import Connection

from .group_commit import MAX_UNITS_PER_COMMIT, Unit

if TYPE_CHECKING:
    from .database import Database

T = TypeVar("T")

NOT_RUN = object()  # run()'s answer when the loop could not take the writer: store from a thread
# A busy writer (the background mover's short units, a thread's commit) is waited for, without blocking
# the loop, up to WRITER_TRIES times WRITER_RETRY_SECONDS: sending the units to threads instead keeps the
# writer busy with their commits, so the next turns' units find it busy too (in ad-hoc create runs at
# concurrency 8, 40% of units ended up in threads that way). Paused loop writes (a checkpoint round, or
# no round yet) and a longer wait send them to threads, which wait for the writer themselves.
WRITER_TRIES = 20
WRITER_RETRY_SECONDS = 0.001
# The commit waits while each turn of the loop brings more units (requests read meanwhile reach the store
# a turn later), up to this many turns, so batches grow under load; a lone request costs two turns (the
# second shows that no other followed it).
GATHER_TURNS = 4


class _Waiting(Generic[T]):
    __slots__ = ("unit", "future")

    def __init__(self, unit: Unit[T], future: asyncio.Future) -> None:
        self.unit = unit
        self.future = future


class LoopCommit:
    def __init__(self, db: "Database") -> None:
        self._db = db
        # Per event loop (a process may run several, e.g. test clients): the units of its next commit.
        self._waiting: dict[asyncio.AbstractEventLoop, list[_Waiting]] = {}

    @property
    def waiting(self) -> bool:
        """Whether units are queued, gathering or waiting for the writer (read by the background mover,
        which then lets them go first)."""
        return bool(self._waiting)

    async def run(self, work: Callable[[Connection], T]) -> T | object:
        """`work(conn)` as an atomic unit of work, committed with the other units queued meanwhile; its
        result, its exception raised, or NOT_RUN (nothing was written)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(Unit(work), loop.create_future())  # the unit keeps this request's context
        queue = self._waiting.get(loop)
        if queue is None:
            queue = self._waiting[loop] = []
            loop.call_soon(self._gather, loop, 0, 0)
        queue.append(waiting)
        ran = await waiting.future
        return waiting.unit.outcome() if ran else NOT_RUN

    def _gather(self, loop: asyncio.AbstractEventLoop, turns: int, seen: int) -> None:
        """Let the loop turn over while units keep arriving (requests read in the meantime reach the
        store a turn later), up to GATHER_TURNS; then commit."""
        queued = len(self._waiting[loop])
        if queued > seen and turns < GATHER_TURNS:
            loop.call_soon(self._gather, loop, turns + 1, queued)
        else:
            self._flush(loop)

    def _flush(self, loop: asyncio.AbstractEventLoop, tries: int = 1) -> None:
        db = self._db
        if not db.try_inline_writer():
            if tries < WRITER_TRIES and not db.inline_writes_paused:  # soon free again
                loop.call_later(WRITER_RETRY_SECONDS, self._flush, loop, tries + 1)
                return
            self._settle(self._waiting.pop(loop), False)
            return
        batch = self._waiting.pop(loop)  # with the units that arrived while it waited
        try:
            for start in range(0, len(batch), MAX_UNITS_PER_COMMIT):
                db.run_units_held([w.unit for w in batch[start:start + MAX_UNITS_PER_COMMIT]])
        finally:
            db.release_inline_writer()
        self._settle(batch, True)

    @staticmethod
    def _settle(batch: list[_Waiting], ran: bool) -> None:
        for w in batch:
            if not w.future.done():  # a request cancelled meanwhile has no one to tell
                w.future.set_result(ran)
