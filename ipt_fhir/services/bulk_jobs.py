"""What $import and $export jobs share: a row in `bulk_job`, one background thread per job in this
process, a cancel flag the running job polls, and a status read scoped to the job's kind (an import's
status URL never shows an export job, nor the reverse)."""
from __future__ import annotations

import threading

from ipt_fhir.store import bulk
from ipt_fhir.store.database import Database


class JobRunner:
    kind: str  # "import" or "export", as stored in bulk_job.kind

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cancel: set[str] = set()
        self._threads: dict[str, threading.Thread] = {}

    def start(self, job_id: str) -> None:
        thread = threading.Thread(target=self._run, args=(job_id,), name=f"{self.kind}-{job_id}", daemon=True)
        self._threads[job_id] = thread
        thread.start()

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
        return job_id in self._cancel

    def _run(self, job_id: str) -> None:
        raise NotImplementedError
