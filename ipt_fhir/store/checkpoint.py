"""Background WAL checkpoints for SQLite, and keeping disk syncs out of writes on the event loop.

Left to itself, SQLite checkpoints inside the commit that pushes the WAL past its limit: that write
request then copies megabytes into the database file and waits for an fsync, a latency spike of tens
of milliseconds while every other writer queues behind it. A thread of ours checkpoints instead,
often and in small steps, in PASSIVE mode (it never waits for, or blocks, readers and the writer).
The writer's own auto-checkpoint stays as a backstop should this thread fall behind.

One sync is left in the write path: once a checkpoint has copied the whole WAL, the next write
transaction starts the WAL over and syncs its new header (SQLite does so even with synchronous=NORMAL).
Small writes run on the event loop (Database.try_inline_writer), where such a sync would stall every
request. So each checkpoint ends with the WAL holding a frame no checkpoint has copied yet, which means
no write can restart it: the round checkpoints in passes while every write goes on, each pass copying
what arrived during the one before, until a pass finds little new; then it pauses event-loop writes for
a last pass and, if that copied everything, restarts the WAL itself with a one-frame write (the
user_version header field, rewritten unchanged) before it lets event-loop writes resume. Writes from
threads never pause; only this process's writes are coordinated (several processes writing one SQLite
file may still restart the WAL in a request).

Pausing for the whole checkpoint instead sent every event-loop write of its ~100 ms (a second of
back-to-back creates' WAL, copied and synced) to threads, at several times the cost each, and a
checkpoint under the writer copied, meanwhile, the ~30 ms of WAL written during it: creates at
concurrency 1 did 6% less than with the passes, in interleaved ad-hoc runs. The price of the unpaused
passes: should one of them copy everything (no write at all during it, so an idle server), an
event-loop write arriving before the pause restarts the WAL and syncs, delaying the requests of an
otherwise idle server once.

Every round moves the search index rows of new resources into the index (pending_index.py); every
other round also checkpoints and keeps the query planner's statistics fresh (statistics.py).
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from . import statistics

if TYPE_CHECKING:
    from .database import Database

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 0.5  # readers move at most about this much of creates' index rows themselves
# A checkpoint every other round, once a second: each one syncs the disk in every pass and pauses
# event-loop writes for its last, so fewer, larger checkpoints cost less. A second of back-to-back creates
# of the benchmark's CarePlan at concurrency 32 left about 10k WAL frames per checkpoint, a quarter of the
# backstop (database.py).
CHECKPOINT_EVERY_ROUNDS = 2
MOVE_CHUNK = 128  # resources whose pending index rows one background unit of work moves (11-20 ms)
MOVE_CHUNKS_PER_ROUND = 256  # so that a round always reaches its checkpoint, however fast resources arrive
# Unpaused checkpoint passes go on while each still copied more than this many new frames (~2 MiB: a pass
# that short leaves the paused one little to copy), and stop after MAX_UNPAUSED_PASSES in any case.
SETTLED_FRAMES = 512
MAX_UNPAUSED_PASSES = 4


class Checkpointer:
    def __init__(self, db: "Database", interval: float = INTERVAL_SECONDS) -> None:
        self._db = db
        self._interval = interval
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._round = threading.Lock()  # one round at a time: a round's resume must not end another's pause
        self._statistics = statistics.RefreshSchedule()
        self._raw = None  # this thread's own connection: checkpoints run beside the writer's

    def wake(self) -> None:
        """Called after commits: starts the thread on first use, so a database nobody writes to
        (a read-only tool, most test fixtures) never gets one."""
        if self._thread is None and not self._stopped.is_set():
            with self._lock:
                if self._thread is None and not self._stopped.is_set():
                    self._thread = threading.Thread(target=self._run, name="ipt-fhir-sqlite-checkpoint",
                                                    daemon=True)
                    self._thread.start()

    def statistics_fresh(self) -> None:
        """The planner statistics were just checked or gathered (Database.ensure_statistics)."""
        self._statistics.done(self._db.commits)

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        rounds = 0
        try:
            while True:
                try:
                    self.run_round(checkpoint=rounds % CHECKPOINT_EVERY_ROUNDS == 0)
                    rounds += 1
                except Exception:  # noqa: BLE001 - the writer's auto-checkpoint still bounds the WAL
                    log.warning("background WAL checkpoint failed", exc_info=True)
                    if self._raw is not None:
                        self._raw.invalidate()
                        self._raw = None
                if self._stopped.wait(self._interval):
                    return
        finally:
            with self._round:
                if self._raw is not None:
                    self._raw.close()
                    self._raw = None

    def run_round(self, checkpoint: bool = True) -> None:
        """Pending index rows moved, then (if `checkpoint`) one checkpoint: unpaused passes, then a last
        one with event-loop writes paused, which are resumed only once the WAL holds an uncopied frame
        again (they stay paused if the round fails after pausing them)."""
        db = self._db
        with self._round:
            # Bounds the index rows readers may have to move themselves; in short units, so that writes
            # on the event loop go on in between. Full chunks only after the first: a short one is what
            # arrived while the round ran, left to the next round with what follows it (chasing each
            # new resource makes many small units, each a commit of the same index pages).
            for _ in range(MOVE_CHUNKS_PER_ROUND):
                if self._stopped.is_set() or db.move_pending_index(MOVE_CHUNK) < MOVE_CHUNK:
                    break
                db.yield_to_loop_writes()
            if not checkpoint:
                return
            self._copy_while_writes_go_on()
            db.pause_inline_writes()
            with db.writer_held():
                log_frames, copied = self._checkpoint()  # what arrived during the last unpaused pass
                if copied >= log_frames:  # all copied (or no WAL yet): the next write would start it over
                    with db.write(reads_index=False) as conn:
                        driver = conn.connection.driver_connection
                        (version,) = driver.execute("PRAGMA user_version").fetchone()
                        driver.execute(f"PRAGMA user_version = {int(version)}")
                if self._statistics.due(db.commits):  # a few ms; after the restart, so it cannot restart
                    self._refresh_statistics()
            db.resume_inline_writes()

    def _copy_while_writes_go_on(self) -> None:
        """The bulk of the copying, every write going on: passes until one copied few new frames (so few
        arrived during it), or a reader holds frames back (another pass would copy no more)."""
        copied_before = 0
        for _ in range(MAX_UNPAUSED_PASSES):
            log_frames, copied = self._checkpoint()
            if copied < log_frames or copied - copied_before <= SETTLED_FRAMES:
                return
            copied_before = copied

    def _refresh_statistics(self) -> None:
        try:
            with self._db.write(reads_index=False) as conn:
                statistics.analyze(conn.connection.driver_connection)
        except Exception:  # noqa: BLE001 - stale statistics slow some searches; they never stop the rounds
            log.warning("refreshing SQLite planner statistics failed", exc_info=True)
        self._statistics.done(self._db.commits)

    def _checkpoint(self) -> tuple[int, int]:
        """A PASSIVE checkpoint: (frames in the WAL, frames copied into the database file)."""
        if self._raw is None:
            self._raw = self._db.engine.raw_connection()
        cursor = self._raw.cursor()
        try:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            _busy, log_frames, copied = cursor.fetchone()
        finally:
            cursor.close()
        return log_frames, copied
