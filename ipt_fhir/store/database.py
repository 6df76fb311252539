"""Engine creation and the unit of work: the only transaction boundary in the server."""
from __future__ import annotations

import threading
import time
from datetime import datetime
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Callable, Iterator, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from . import pending_index, statistics
from .checkpoint import Checkpointer
from .group_commit import GroupCommit, Unit
from .index_worker import IndexWorker
from .loop_commit import LoopCommit

T = TypeVar("T")

# Pages of WAL at which a commit checkpoints by itself. The background checkpointer keeps the WAL far
# below this (checkpoint.py: about 10k pages between its checkpoints under back-to-back creates); the
# backstop only bounds it if that thread falls behind, and then blocks the committing request, possibly
# on the event loop.
BACKSTOP_CHECKPOINT_PAGES = 40_000
# Snapshots a reader starts at most, when other server processes keep creating resources (_begin_indexed).
READ_ATTEMPTS = 4
LOOP_WRITES_FIRST_SECONDS = 0.005  # the longest the background thread lets queued event-loop writes go first


def _plain_file(engine: Engine) -> bool:
    """SQLite: whether the database is a file named by its path (what the index worker can open), not
    in memory or a URI filename."""
    path = engine.url.database
    return bool(path) and path != ":memory:" and not path.startswith("file:") and "uri" not in engine.url.query


def _configure_sqlite(engine: Engine, cache_mib: int) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # WAL lets readers run beside the single writer; busy_timeout queues writers instead of failing.
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see Database.write)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        # Pages come from the page cache or a memory map instead of one read() system call each
        # (SQLite's defaults: a 2 MiB cache, no map).
        cur.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
        cur.execute("PRAGMA mmap_size=268435456")
        # Checkpoints run in the background (checkpoint.py); the one inside a commit is only the
        # backstop, at ~160 MiB of WAL instead of SQLite's 4 MiB.
        cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        # On the driver directly: SQLAlchemy's statement pipeline would cost more than the BEGIN.
        conn.connection.driver_connection.execute(conn.info.pop("begin_sql", "BEGIN"))


@lru_cache(maxsize=64)  # a write stores one instant in several rows (resource, history)
def sqlite_datetime(t: datetime) -> str:
    """A datetime as SQLAlchemy stores DateTime on SQLite, 'YYYY-MM-DD HH:MM:SS.ffffff' (fixed width, so
    text order is time order), for the statements that bypass SQLAlchemy."""
    return t.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def _driver_sql(conn: Connection, sql: str, params: tuple) -> tuple[str, tuple]:
    if conn.dialect.name == "sqlite":
        return sql, tuple(sqlite_datetime(p) if isinstance(p, datetime) else p for p in params)
    return sql.replace("?", "%s"), params


def execute_raw(conn: Connection, sql: str, params: tuple) -> int:
    """Run one statement on the driver connection inside the caller's unit of work; returns rowcount.
    For the few statements of the hot write path, where SQLAlchemy's pipeline would cost most of the
    time. `sql` uses `?` placeholders; values are adapted as SQLAlchemy would store them."""
    sql, params = _driver_sql(conn, sql, params)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.rowcount
    finally:
        cursor.close()


def fetch_one(conn: Connection, sql: str, params: tuple) -> tuple | None:
    sql, params = _driver_sql(conn, sql, params)
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchone()
    finally:
        cursor.close()


class Database:
    """Owns the engine. `write()` is a unit of work; `read()` a consistent read."""

    def __init__(self, url: str, *, pool_size: int = 10, index_worker: bool = False) -> None:
        """`index_worker`: on SQLite, new resources' index rows are extracted by a child process
        (index_worker.py); a server's choice, not a tool's or a test's."""
        self.url = url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        if self.dialect == "sqlite":
            sqlite_args = {"check_same_thread": False, "timeout": 30}
            self.engine = sa.create_engine(
                url, poolclass=QueuePool, pool_size=pool_size, max_overflow=20, connect_args=sqlite_args)
            _configure_sqlite(self.engine, cache_mib=16)
            # SQLite has one writer. Threads of this process queue on a lock instead of in SQLite's busy
            # handler, which polls with sleeps of up to 100 ms and wrecks latency under concurrency.
            # All writes go through one connection: a connection's page cache survives only its own
            # commits (another connection's commit invalidates it), and a warm cache is what keeps a
            # write from reading its index pages back from disk. Reentrant: the checkpointer holds it
            # across a checkpoint (writer_held) and writes inside that (the WAL restart, statistics).
            self._writer: threading.RLock | nullcontext = threading.RLock()
            # Whether an event-loop write could meet a disk sync; the checkpointer clears it (checkpoint.py).
            self._inline_paused = True
            self._write_engine = sa.create_engine(
                url, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=3600,
                connect_args=sqlite_args)
            _configure_sqlite(self._write_engine, cache_mib=64)
            self._writer_connection: Connection | None = None
            self.commits = 0  # units of work committed by this process (statistics refresh, checkpoint.py)
            self._group = GroupCommit(self._writer, self._transaction)
            self.loop_commit: LoopCommit | None = LoopCommit(self)
            self._checkpointer: Checkpointer | None = Checkpointer(self)
            self._index_worker = IndexWorker(self.engine.url.database) if index_worker and _plain_file(self.engine) else None
        else:
            self.engine = sa.create_engine(
                url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True,
            )
            self._writer, self._write_engine = nullcontext(), self.engine
            self._checkpointer = None
            self._index_worker = None
            self.loop_commit = None  # writes there are network round trips: they belong in a thread

    @contextmanager
    def write(self, *, reads_index: bool = True) -> Iterator[Connection]:
        """One atomic unit of work. On SQLite the write lock is taken up front (BEGIN IMMEDIATE), so
        read-then-write sequences (conditional create, version checks) cannot interleave.
        `reads_index=False`: a unit that neither reads nor writes the search index (the checkpointer's
        own), which need not index pending resources first."""
        if reads_index and self._index_worker is not None:
            self.move_pending_index()  # most of what is pending, extracted on another core (if any)
        with self._writer, self._transaction() as conn:
            if reads_index:
                pending_index.bring_current(conn)  # the unit may search: the index must be complete
            yield conn

    def try_inline_writer(self) -> bool:
        """SQLite: take the writer for writes run on the event loop (loop_commit.py), but only when that
        can never wait: not while another thread writes (the lock is free) and not while the checkpointer
        has paused such writes (the next commit could have to sync the WAL to disk; see checkpoint.py).
        True means the caller holds the writer and must call release_inline_writer(). (PostgreSQL has no
        loop_commit: a write there is network round trips, which belong in a thread.)"""
        if self._inline_paused:
            return False
        if not self._writer.acquire(blocking=False):  # type: ignore[union-attr]
            return False
        if self._inline_paused:  # paused between the check and the acquire
            self._writer.release()  # type: ignore[union-attr]
            return False
        return True

    def release_inline_writer(self) -> None:
        self._writer.release()  # type: ignore[union-attr]

    def pause_inline_writes(self) -> None:
        """For the checkpointer: no event-loop write from now on, and none still running on return.
        Writes from threads go on as usual."""
        self._inline_paused = True
        with self._writer:  # waits out an event-loop write that started before the pause
            pass

    def resume_inline_writes(self) -> None:
        self._inline_paused = False

    def yield_to_loop_writes(self) -> None:
        """For the background thread (SQLite) between two short units of work: let the event loop's queued
        writes take the writer first (a lock is not fair: back-to-back units would starve them,
        loop_commit.py), waiting at most LOOP_WRITES_FIRST_SECONDS."""
        loop_commit = self.loop_commit
        deadline = time.monotonic() + LOOP_WRITES_FIRST_SECONDS
        while loop_commit.waiting and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.0005)

    @property
    def inline_writes_paused(self) -> bool:
        return self._inline_paused

    @contextmanager
    def writer_held(self) -> Iterator[None]:
        """Hold the writer without a transaction: no write of this process starts inside the block."""
        with self._writer:
            yield

    def ensure_statistics(self) -> None:
        """SQLite: ANALYZE now if the database has no planner statistics yet (statistics.py)."""
        if self.dialect != "sqlite":
            return
        with self.read() as conn:  # the usual case, statistics present: no write transaction at start-up
            present = statistics.have_statistics(conn.connection.driver_connection)
        if not present:
            with self.write() as conn:
                statistics.analyze(conn.connection.driver_connection)
        self._checkpointer.statistics_fresh()  # type: ignore[union-attr] - its first round need not redo them

    def run_units_held(self, units: list[Unit]) -> None:
        """SQLite, for the holder of the inline writer (loop_commit.py): `units` in one transaction.
        Units other threads queued for group commit are left to them, so a large write that was sent to
        a thread never ends up running on the loop."""
        self._group.run_held(units)

    def run_write(self, work: Callable[[Connection], T]) -> T:
        """`work(conn)` as one atomic unit of work; returns its result or raises its exception. On
        SQLite, units of concurrent callers share one commit (see group_commit.py); each is still
        all-or-nothing and sees the writes of the units before it."""
        if self.dialect == "sqlite":
            return self._group.run(work)
        with self.write() as conn:
            return work(conn)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        if self.dialect != "sqlite":
            with self._write_engine.connect() as conn, conn.begin():
                yield conn
            return
        # SQLite: the caller holds the writer lock, so the one writer connection stays checked out
        # between units of work instead of going through the pool (and its reset) every time.
        conn = self._writer_connection
        if conn is None or conn.closed or conn.invalidated:
            conn = self._writer_connection = self._write_engine.connect()
            conn.info[pending_index.WRITER] = True
        conn.info["begin_sql"] = "BEGIN IMMEDIATE"
        try:
            with conn.begin():
                yield conn
            self.commits += 1
        finally:
            if conn.in_transaction():  # the rollback itself failed: start afresh next time
                self._writer_connection = None
                conn.invalidate()
        self._checkpointer.wake()  # type: ignore[union-attr]

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A consistent read; on SQLite its snapshot includes every index row of what it sees written
        before it began (pending_index.py)."""
        with self.engine.connect() as conn:
            transaction = conn.begin()
            # The snapshot's first statement: were rows pending in it, start a new one after moving them.
            if self.dialect == "sqlite" and pending_index.pending(conn.connection.driver_connection):
                transaction.rollback()
                transaction = self._begin_indexed(conn)
            with transaction:
                yield conn

    def _begin_indexed(self, conn: Connection) -> sa.engine.Transaction:
        """SQLite: a read transaction on `conn` whose snapshot has no resource pending. The index worker, if
        one runs, extracts most of them on another core first; the rest (created meanwhile) are moved here
        while this process's writer is held, and the snapshot starts before it is released, so no write of
        this process can come in between. Another server process's can (serve --workers): then again, a
        few times. Inside this thread's own unit of work nothing can be moved: the snapshot starts as is
        (the unit brings the index current itself when it searches)."""
        if self._index_worker is not None:
            self._move_pending()
        with self._writer:
            if self._in_unit():
                return conn.begin()
            for attempt in range(1, READ_ATTEMPTS + 1):
                transaction = conn.begin()
                if attempt == READ_ATTEMPTS or not pending_index.pending(conn.connection.driver_connection):
                    return transaction
                transaction.rollback()
                with self._transaction() as writer:
                    pending_index.move(writer.connection.driver_connection)
        raise AssertionError("unreachable")

    def _in_unit(self) -> bool:
        """SQLite: whether the calling thread is inside a unit of work of its own (holds the writer with
        a transaction open)."""
        conn = self._writer_connection
        return self._writer._is_owned() and conn is not None and conn.in_transaction()  # type: ignore[union-attr]

    def move_pending_index(self, limit: int | None = None) -> int:
        """SQLite: index the pending resources (pending_index.py), all or the `limit` oldest (the background
        mover: short units, so writes on the event loop fit in between), in a unit of work of their own.
        Returns how many; 0 also when the calling thread is inside a unit of work already, which indexes
        them itself when it searches (bring_current)."""
        if self.dialect != "sqlite" or self.fetch_one(pending_index.ANY_PENDING_SQL, ()) is None:
            return 0
        return self._move_pending(limit)

    def _move_pending(self, limit: int | None = None) -> int:
        """move_pending_index for a caller that found rows pending itself. The index worker, if one runs,
        extracts them before the writer is taken, from a snapshot of its own: what commits after it is
        left pending."""
        if self._in_unit():
            return 0
        extracted = None
        if self._index_worker is not None:
            extracted = self._index_worker.extract(limit)
        with self._writer, self._transaction() as conn:
            return pending_index.move(conn.connection.driver_connection, limit, extracted)

    def fetch_one(self, sql: str, params: tuple) -> tuple | None:
        """One row of one statement on a raw pooled DBAPI connection: the read-by-id fast path, without
        the SQLAlchemy execution pipeline. `sql` uses `?` placeholders and is rewritten per dialect."""
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute(sql, params)
            row = cursor.fetchone()
            cursor.close()
            if self.dialect == "postgresql":
                raw.rollback()  # end the implicit read transaction before the connection goes back
            return row
        finally:
            raw.close()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._index_worker is not None:
            self._index_worker.stop()
        if self.dialect == "sqlite":
            with self._writer:
                if self._writer_connection is not None:
                    self._writer_connection.close()
                    self._writer_connection = None
        self.engine.dispose()
        self._write_engine.dispose()
