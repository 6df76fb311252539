"""Where a write by id runs: inline on the event loop (embedded SQLite, writer idle) or in the thread pool.

On SQLite a create, update, patch or delete by id is a bounded piece of local work (about 1.5 ms of
CPU for a 3 KB CarePlan, no network). Handing it to the thread pool costs more than the hop's
instructions: the loop and the worker thread take turns on the GIL and wake each other through the
kernel. Run inline, create measured 670–770 req/s against 475–580 through the thread pool (uvicorn, one
worker, wrk at concurrency 1, 8 and 32, same run), at about the same instructions per request.

What inline means, and where it stops:

- The loop serves nothing else while the write runs. In the thread pool it could hardly do more: the
  write holds the GIL for nearly all of its duration anyway.
- Concurrent inline writes never overlap, so SQLite's group commit (store/group_commit.py) does not
  batch them; it still batches the writes that arrive from threads (transactions, conditional writes).
- When this process's writer lock is taken (a transaction Bundle, an `$import` batch, a conditional
  write running in a thread), an inline write would stop the whole loop until that work commits: such a
  write goes to the thread pool, where only its own request waits. The lock is looked at when the write
  starts; a thread that takes it while the write is still validating (before its unit of work) makes
  the loop wait for that thread's work after all. That window is a fraction of a millisecond, and closing
  it needs a non-blocking writer acquisition in the store.
- Another process writing the same SQLite file (several workers on SQLite, `ipt-fhir db reindex`
  during service) makes SQLite wait in its busy handler, and an inline write does that on the loop.
  SQLite is the single-process embedded deployment; several workers belong on PostgreSQL.
- PostgreSQL always uses the thread pool: each statement is a network round trip, which threads
  overlap.
- Conditional writes (criteria, If-None-Exist) search before they write, for as long as their criteria
  take: they stay in the thread pool.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from starlette.concurrency import run_in_threadpool

from ipt_fhir.store.database import Database

T = TypeVar("T")


def _sqlite_writer_idle(db: Database) -> bool:
    # Database keeps its writer lock (one per process, taken by every SQLite write) to itself; only its
    # state is read here, never the lock itself.
    return db.dialect == "sqlite" and not db._writer.locked()  # type: ignore[union-attr]


async def run_write(db: Database, write: Callable[..., T], /, *args, **kwargs) -> T:  # noqa: ANN002, ANN003
    """`write(*args, **kwargs)`, a write by id, inline when that is cheap and safe (above), else in a thread."""
    if _sqlite_writer_idle(db):
        return write(*args, **kwargs)
    return await run_in_threadpool(write, *args, **kwargs)
