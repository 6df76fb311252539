"""SQLite: a child process that extracts the search index rows of newly created resources.

A server's SQLite writes all run on its event loop, one core, and under write load that core is the
limit while the machine's others idle. Extracting a new resource's index rows is pure Python (parse the
stored JSON, evaluate every search parameter's path): in a thread it would still hold this process's
interpreter lock, so the background mover (checkpoint.py) has this worker do it instead. The worker
reads the oldest pending resources itself, on its own read-only connection (a WAL snapshot: it never
waits for, or blocks, a writer), and answers with their rows as pending_index.Extracted, which the mover
inserts in one unit of work. Only the server process writes.

Readers that find resources pending (Database.read) ask it too, and wait for it without holding the
interpreter lock. The protocol, over the child's stdin and stdout: the server writes how many pending
resources to extract (a decimal line, -1 for all); the worker answers with one frame, an 8-byte length
and a pickle of the Extracted (of None when extracting them failed: the caller extracts them itself). The first frame, sent once the worker has loaded the search parameters,
says it is ready; until then, and whenever it fails (it is then stopped and started again after
RESTART_SECONDS), the server extracts in the calling thread as it would without a worker. The worker
ends when its stdin closes, so it never outlives the server, however that ends.

Run as `python -m ipt_fhir.store.index_worker DATABASE_PATH` (Database starts it; never by hand).
"""
from __future__ import annotations

import logging
import os
import pathlib
import pickle
import select
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import traceback

log = logging.getLogger(__name__)

ANSWER_SECONDS = 5.0  # a chunk of MOVE_CHUNK resources takes milliseconds, all pending a fraction of a second
TURN_SECONDS = 1.0  # waiting for another caller's exchange at most this long, then extracting in the caller
START_SECONDS = 60.0  # to load the search parameters and say it is ready
RESTART_SECONDS = 30.0  # after a failure, extraction stays in the server process this long
_HEADER = struct.Struct("!Q")


class IndexWorker:
    """The server side: starts the worker on first use, asks it for extractions, stops it."""

    def __init__(self, database_path: str) -> None:
        self._path = os.path.abspath(database_path)  # the worker's working directory could differ
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._started_at = 0.0
        self._retry_at = 0.0
        self._lock = threading.Lock()  # one exchange at a time (the mover is one thread; tests may add more)

    def extract(self, limit: int | None = None):  # noqa: ANN201 - pending_index.Extracted | None
        """The `limit` oldest pending resources (all without a limit) extracted by the worker, or None when
        it cannot answer (starting, restarting after a failure, failed now): the caller then extracts them
        itself."""
        if not self._lock.acquire(timeout=TURN_SECONDS):
            return None
        try:
            if not self._usable():
                return None
            proc = self._proc
            try:
                proc.stdin.write(f"{-1 if limit is None else int(limit)}\n".encode())  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                # None: the worker could not extract them (it said why on stderr); it stays up for the next
                return pickle.loads(self._read_frame(ANSWER_SECONDS))
            except (OSError, EOFError, TimeoutError, pickle.UnpicklingError, ValueError) as exc:
                self._fail(f"did not answer ({exc!r})")
                return None
        finally:
            self._lock.release()

    def _usable(self) -> bool:
        if self._proc is None:
            if time.monotonic() >= self._retry_at:
                self._start()
            return False
        if self._ready:
            return True
        if self._proc.poll() is not None:
            self._fail(f"exited with status {self._proc.returncode} while starting")
            return False
        try:
            self._read_frame(0.0)  # the ready frame, if it has come (TimeoutError: none of it yet)
        except TimeoutError:
            if time.monotonic() - self._started_at > START_SECONDS:
                self._fail("did not start")
            return False
        except (OSError, EOFError) as exc:
            self._fail(f"failed to start ({exc!r})")
            return False
        self._ready = True
        return True

    def _start(self) -> None:
        try:
            # The child imports this package as the server did, whatever put it on the server's path.
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__, self._path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                close_fds=True, env=env)
        except OSError as exc:
            self._proc = None
            self._retry_at = time.monotonic() + RESTART_SECONDS
            log.warning("search index worker could not start (%r); new resources are indexed in the server", exc)
            return
        self._ready = False
        self._started_at = time.monotonic()

    def _read_frame(self, timeout: float) -> bytes:
        fd = self._proc.stdout.fileno()  # type: ignore[union-attr] - unbuffered reads below, select-safe
        header = _read_exactly(fd, _HEADER.size, timeout)
        return _read_exactly(fd, _HEADER.unpack(header)[0], ANSWER_SECONDS)

    def _fail(self, why: str) -> None:
        log.warning("search index worker %s; it is restarted in %.0f s, new resources are indexed in the "
                    "server meanwhile", why, RESTART_SECONDS)
        self._stop_process(grace=0.0)  # it may be stuck, and a late answer must never be read as the next
        self._retry_at = time.monotonic() + RESTART_SECONDS

    def stop(self) -> None:
        """Stop the worker for good (server shutdown): it ends on its closed stdin, or is killed."""
        with self._lock:
            self._stop_process(grace=2.0)
            self._retry_at = float("inf")

    def _stop_process(self, grace: float) -> None:
        proc, self._proc, self._ready = self._proc, None, False
        if proc is None:
            return
        if not grace:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr] - closed stdin is the worker's signal to end
            except OSError:
                pass
        try:
            proc.wait(timeout=grace or None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_exactly(fd: int, size: int, timeout: float) -> bytes:
    """`size` bytes from `fd` within `timeout` seconds: TimeoutError if none came (so a caller may ask
    again later), EOFError at the end of the stream or when only part came (the stream is out of step)."""
    chunks, missing = [], size
    deadline = time.monotonic() + timeout
    while missing:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            if missing < size:
                raise EOFError(f"{size - missing} of {size} bytes within {timeout} s")
            raise TimeoutError(f"nothing to read for {timeout} s")
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            raise EOFError("the worker closed its output")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


# --- the worker process --------------------------------------------------------------------------

def _send(out, payload: bytes) -> None:  # noqa: ANN001 - a binary stream
    out.write(_HEADER.pack(len(payload)))
    out.write(payload)
    out.flush()


def serve(database_path: str) -> None:
    # The terminal's Ctrl-C reaches the whole process group: the server stops this worker itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The frames own stdout: anything else printed goes to stderr, the server's log.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from ipt_fhir.fhir.search.registry import registry

    from .pending_index import extract_oldest

    registry()  # the search parameters, loaded before the first request
    # A WAL reader never waits for the writer; a short busy timeout covers the moments it could (recovery).
    connection = sqlite3.connect(pathlib.Path(database_path).as_uri() + "?mode=ro", uri=True,
                                 isolation_level=None, timeout=ANSWER_SECONDS / 2)
    connection.execute("PRAGMA mmap_size=268435456")  # as the server's connections (database.py)
    _send(out, b"")
    for line in sys.stdin.buffer:  # ends when the server closes our stdin, or exits
        try:
            extracted = extract_oldest(connection, int(line))
        except Exception:  # noqa: BLE001 - the server extracts them itself; this worker serves the next
            traceback.print_exc()
            extracted = None
        _send(out, pickle.dumps(extracted, protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    serve(sys.argv[1])
