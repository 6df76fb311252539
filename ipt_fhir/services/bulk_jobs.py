"""What $import and $export jobs share: a row in `bulk_job`, one background thread per job in this
process, a cancel flag the running job polls, a status read scoped to the job's kind (an import's
status URL never shows an export job, nor the reverse), and a stop for server shutdown."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from ipt_fhir.fhir.outcome import FHIRError
from ipt_fhir.store import bulk
from ipt_fhir.store.database import Database


def is_file(path: Path) -> bool:
    """Path.is_file, False for a name the file system refuses (one over 255 bytes raises OSError)."""
    try:
        return path.is_file()
    except OSError:
        return False


def failure_reason(exc: BaseException, what: str) -> str:
    """What a failed job's status poll tells the client: an expected failure's own text; of anything else
    (a database error, say) only its kind, for its text could hold SQL and the values bound to it (the
    server log has it whole)."""
    if isinstance(exc, FHIRError):
        return "; ".join(i.diagnostics for i in exc.issues) or f"The {what} failed"
    return f"An internal error stopped the {what} ({type(exc).__name__}); the server log has the details"


class JobRunner:
    kind: str  # "import" or "export", as stored in bulk_job.kind

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cancel: set[str] = set()
        self._threads: dict[str, threading.Thread] = {}
        self._stopping = threading.Event()

    def start(self, job_id: str) -> None:
        thread = threading.Thread(target=self._run, args=(job_id,), name=f"{self.kind}-{job_id}", daemon=True)
        self._threads[job_id] = thread
        thread.start()

    def running_here(self, job_id: str) -> bool:
        """Whether a thread of this process runs the job."""
        thread = self._threads.get(job_id)
        return thread is not None and thread.is_alive()

    def wait(self, job_id: str, timeout: float | None = None) -> None:
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)

    def status(self, job_id: str) -> dict | None:
        with self.db.read() as conn:
            job = bulk.get_job(conn, job_id)
        return job if job and job["kind"] == self.kind else None

    def request_cancel(self, job_id: str) -> None:
        self._cancel.add(job_id)

    def cancelled(self, job_id: str) -> bool:
        """Whether the job should stop now: cancelled by its client, or the server is shutting down."""
        return job_id in self._cancel or self._stopping.is_set()

    def cancelled_by_client(self, job_id: str) -> bool:
        return job_id in self._cancel

    def request_stop(self) -> None:
        """Server shutdown: every job of this process stops at its next check. What a stopped job leaves
        is for its kind to say (an import is resumed by the next start, an export reported failed)."""
        self._stopping.set()

    def wait_stopped(self, deadline: float) -> list[str]:
        """Wait (until time.monotonic() reaches `deadline`) for the threads of stopping jobs, so none goes
        on using a database being closed. Returns the jobs still running when the time was up."""
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        return [job_id for job_id, thread in self._threads.items() if thread.is_alive()]

    def _run(self, job_id: str) -> None:
        raise NotImplementedError
