"""The IPT operations, HTTP-free: PlanDefinition/[id]/$apply and CarePlan/[id]/$ipt-progress."""
from __future__ import annotations

from typing import Callable

from ipt_fhir.domain import progress as prog
from ipt_fhir.domain.apply import ApplyRequest, apply_protocol
from ipt_fhir.domain.canonical import CAREPLAN_PROFILE, claims_profile, split_reference
from ipt_fhir.domain.conformance_loader import plan_definition
from ipt_fhir.fhir.jsonio import load_stored
from ipt_fhir.fhir.outcome import FHIRError, gone, not_found
from ipt_fhir.security import guard
from ipt_fhir.store import ipt_progress
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database

from .hook import fresh_progress
from .lookup import StoreLookup

# (transaction Bundle, base_url, prefer) -> transaction-response Bundle bytes
TransactionRunner = Callable[[dict, str, str], bytes]


class IptService:
    def __init__(self, db: Database, canonical_base: str) -> None:
        self.db = db
        self.canonical_base = canonical_base.rstrip("/")

    def apply(self, plan_definition_id: str, request: ApplyRequest) -> dict:
        """The course as a transaction Bundle (see ipt_fhir.domain.apply for why a Bundle)."""
        if plan_definition(plan_definition_id, self.canonical_base) is None:
            with self.db.read() as conn:
                stored = repo.current(conn, "PlanDefinition", plan_definition_id)
            if stored is None or stored.deleted:
                raise not_found(f"PlanDefinition/{plan_definition_id} is not known")
            raise FHIRError.of(422, "not-supported",
                               f"$apply is implemented for the IPT protocols this server publishes, not for "
                               f"PlanDefinition/{plan_definition_id}", "PlanDefinition")
        # A restricted token is told nothing of what exists outside what it may read (the transaction
        # checks its compartment and scopes as for any write); everyone else hears a missing target.
        if request.store and not guard.is_restricted():
            self._require_existing(request.subject, "subject")
            if request.practitioner:
                self._require_existing(request.practitioner, "practitioner")
        return apply_protocol(plan_definition_id, canonical_base=self.canonical_base, **request.kwargs())

    def _require_existing(self, reference: str, parameter: str) -> None:
        """Stored, the course must be about someone who exists here: a plan, course and sessions pointing
        at nothing would be written in full otherwise. (A preview may name anyone: its Bundle is the
        client's to complete, e.g. with the Patient's own entry.)"""
        parts = split_reference(reference)  # a version suffix names the same resource
        if parts is None:  # a urn:uuid: no entry of the stored Bundle has it, the transaction says so
            return
        found = repo.read_current(self.db, *parts)
        if found is None or found.deleted:
            raise FHIRError.of(422, "business-rule", f"{parameter} {reference} does not exist: store the "
                               f"{parts[0]} first, or apply without store to get the Bundle to complete", parameter)

    def progress(self, careplan_id: str) -> dict:
        """$ipt-progress: the Parameters of the plan's read-model row (one primary-key read)."""
        guard.require("read", "CarePlan")
        with self.db.read() as conn:
            row = prog.current_row(ipt_progress.get(conn, careplan_id))
            if row is not None and not guard.is_restricted():
                return prog.PlanProgress.from_row(row).to_parameters(self.canonical_base)
            stored = repo.current(conn, "CarePlan", careplan_id)
            if stored is not None and not stored.deleted:
                # Progress is the plan's data: the same compartment and label checks as reading it.
                guard.check_resource("read", "CarePlan", stored.content)
            if row is not None:
                return prog.PlanProgress.from_row(row).to_parameters(self.canonical_base)
            if stored is None:
                raise not_found(f"CarePlan/{careplan_id} is not known")
            if stored.deleted:
                raise gone(f"CarePlan/{careplan_id} was deleted")
            careplan = load_stored(stored.content)
            if not claims_profile(careplan, CAREPLAN_PROFILE):
                raise FHIRError.of(422, "business-rule",
                                   f"CarePlan/{careplan_id} does not claim the IPT CarePlan profile; "
                                   "$ipt-progress is defined for IPT care plans only", "CarePlan.meta.profile")
            # An IPT plan stored before the read model existed: computed once, from the store.
            return fresh_progress(careplan, StoreLookup(conn)).to_parameters(self.canonical_base)
