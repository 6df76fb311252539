"""The IPT write hook: cross-resource rules, the progress read model and the CarePlan narrative.

- check: resources claiming an IPT profile go through ipt_fhir.domain.rules (errors -> 422, warnings
  returned with the success); writes to the server's own conformance resources are refused (405).
- after_write: the progress row of every IPT CarePlan the change touches is updated in the same unit
  of work (one locked row read + one upsert per plan; no recomputation over the plan's sessions, except
  when a course joins or leaves a plan: its sessions and their scores go with it).
- prepare: a CarePlan claiming the IPT profile gets its generated narrative regenerated from the plan
  and its progress as the CarePlan is stored (a client-written narrative is kept). Session, score and
  goal writes do not write a new CarePlan version: the narrative's figures are those of the plan's
  last write, $ipt-progress is always current. (Rewriting the plan on every session would multiply
  its versions, race with clients' If-Match updates and notify CarePlan subscribers of non-changes.)
"""
from __future__ import annotations

from sqlalchemy.engine import Connection

from ipt_fhir.domain import progress as prog
from ipt_fhir.domain import rules
from ipt_fhir.domain.canonical import CAREPLAN_PROFILE, claims_profile, reference
from ipt_fhir.domain.conformance_loader import CONFORMANCE_TYPES
from ipt_fhir.domain.narrative import with_narrative
from ipt_fhir.fhir.outcome import Issue, error, read_only
from ipt_fhir.services.write_hooks import Change
from ipt_fhir.store import ipt_progress

from . import conformance
from .lookup import StoreLookup

TRACKED = frozenset({"CarePlan", "ServiceRequest", "Encounter", "Observation", "Goal", "Condition"})


class IptWriteHook:
    def wants(self, resource_type: str, stored: bytes) -> bool:
        """Conformance writes (refused), the types the read model follows, and whatever claims an IPT
        profile (its URL ends in 'StructureDefinition/ipt-…'; stored JSON never escapes letters)."""
        return resource_type in TRACKED or resource_type in CONFORMANCE_TYPES or b"ipt-" in stored

    # ---- rules ---------------------------------------------------------------------------------
    def check(self, conn: Connection, change: Change) -> list[Issue]:
        if change.resource_type in CONFORMANCE_TYPES:
            return _check_conformance_write(change)
        if change.resource is None:
            return []
        # rules.check decides what is an IPT resource (a claim, or links: no lookup for anything else)
        return rules.check(change.resource, change.previous, StoreLookup(conn, written_after=change.written_after))

    # ---- narrative -----------------------------------------------------------------------------
    def prepare(self, conn: Connection, resource_type: str, doc: dict) -> dict:
        if resource_type != "CarePlan" or not claims_profile(doc, CAREPLAN_PROFILE):
            return doc
        text = doc.get("text")
        if text and not _is_ours(text):
            return doc  # the client's own narrative is kept untouched
        lookup = StoreLookup(conn)
        row = prog.current_row(ipt_progress.get(conn, doc["id"]))
        if row is None:
            progress = fresh_progress(doc, lookup)
        else:
            progress = prog.apply_change(prog.PlanProgress.from_row(row), doc, lookup=lookup)
        return with_narrative(doc, progress)

    # ---- read model ----------------------------------------------------------------------------
    def after_write(self, conn: Connection, change: Change) -> None:
        if change.resource_type not in TRACKED:
            return
        lookup = StoreLookup(conn)
        now = change.resource
        plans_now = set(prog.plans_affected(now, lookup)) if now is not None else set()
        plans_before = set(prog.plans_affected(change.previous, lookup)) if change.previous is not None else set()
        if change.resource_type == "CarePlan":
            plans_before = {change.id} if change.previous is not None else set()
        for plan_id in sorted(plans_now | plans_before):
            if change.resource_type == "CarePlan" and plan_id == change.id:
                if now is None or not claims_profile(now, CAREPLAN_PROFILE):
                    ipt_progress.delete(conn, plan_id)
                else:
                    _update_plan_row(conn, now, lookup)
                continue
            # Whether the resource joined this plan (created, or re-pointed here) or left it (deleted, or
            # re-pointed elsewhere); an update within the plan does neither.
            moved = (plan_id in plans_now) != (plan_id in plans_before)
            row = prog.current_row(ipt_progress.get(conn, plan_id, for_update=True))
            if row is None or (moved and change.resource_type == "ServiceRequest"):
                plan = lookup.read("CarePlan", plan_id)
                if plan is None or not claims_profile(plan, CAREPLAN_PROFILE):
                    continue
                # Already holds this change: it is stored. A course brings or takes its sessions, and their
                # scores, with it: recomputed as a rebuild would, which finds sessions through live courses.
                progress = fresh_progress(plan, lookup)
            else:
                progress = prog.PlanProgress.from_row(row)
                if plan_id in plans_now:
                    prog.apply_change(progress, now, lookup=lookup)
                else:  # the resource left this plan (deleted, or re-pointed elsewhere)
                    prog.apply_change(progress, change.previous, deleted=True, lookup=lookup)
                if moved and change.resource_type == "Encounter":
                    _move_session_scores(progress, change.id, lookup, left=plan_id not in plans_now)
            ipt_progress.put(conn, plan_id, progress.subject, progress.to_row())


def _move_session_scores(progress: prog.PlanProgress, encounter_id: str, lookup: StoreLookup, *, left: bool) -> None:
    """A session's scores that name no plan of their own belong to the plan through the session
    (fresh_progress): they join the plan with it (even when written before it, in a transaction's order)
    and leave with it, unless a course of the plan they are based on keeps them in it."""
    for score in lookup.search("Observation", [("encounter", reference("Encounter", encounter_id))]):
        if prog.plans_named(score):
            continue
        if left and progress.careplan_id in prog.plans_affected(score, lookup):
            continue
        prog.apply_change(progress, score, deleted=left, lookup=lookup)


def _update_plan_row(conn: Connection, careplan: dict | None, lookup: StoreLookup) -> None:
    if careplan is None or not claims_profile(careplan, CAREPLAN_PROFILE):
        return  # deleted, or no longer an IPT plan: the caller drops the row
    row = prog.current_row(ipt_progress.get(conn, careplan["id"], for_update=True))
    if row is None:
        progress = fresh_progress(careplan, lookup)
    else:
        progress = prog.apply_change(prog.PlanProgress.from_row(row), careplan, lookup=lookup)
    ipt_progress.put(conn, careplan["id"], progress.subject, progress.to_row())


def fresh_progress(careplan: dict, lookup: StoreLookup) -> prog.PlanProgress:
    """The row computed from the store: only when a plan has no row yet (its creation, usually with
    nothing else stored; or data written before the read model existed), its row is of an older layout
    (progress.current_row), or a course joins or leaves it."""
    progress = prog.new_progress(careplan)
    prog.apply_change(progress, careplan, lookup=lookup)
    if not careplan.get("id"):
        return progress
    plan_ref = reference("CarePlan", careplan["id"])
    courses = lookup.search("ServiceRequest", [("based-on", plan_ref)])
    sessions: dict[str, dict] = {}
    for course in courses:
        for enc in lookup.search("Encounter", [("based-on", reference("ServiceRequest", course["id"]))]):
            sessions.setdefault(enc["id"], enc)
    scores: dict[str, dict] = {o["id"]: o for o in lookup.search("Observation", [("based-on", plan_ref)])}
    # As plans_affected: a score naming no plan counts for the plan of its course and of its session.
    for course in courses:
        for o in lookup.search("Observation", [("based-on", reference("ServiceRequest", course["id"]))]):
            if not prog.plans_named(o):
                scores.setdefault(o["id"], o)
    for enc_id in sessions:
        for o in lookup.search("Observation", [("encounter", reference("Encounter", enc_id))]):
            if not prog.plans_named(o):
                scores.setdefault(o["id"], o)
    for resource in [*courses, *sessions.values(), *scores.values()]:
        prog.apply_change(progress, resource)
    return progress


def _is_ours(text: dict) -> bool:
    from ipt_fhir.domain.narrative import is_generated_by_us

    return is_generated_by_us(text)


def _check_conformance_write(change: Change) -> list[Issue]:
    reg = conformance.active()
    if reg is None:
        return []
    if change.id in reg.reserved_ids:
        raise read_only(f"{change.resource_type}/{change.id} is published by this server and is read-only",
                        change.resource_type)
    url = (change.resource or {}).get("url")
    if reg.claims_url(url):
        return [error("business-rule", f"The canonical URL {url} is published by this server; "
                      "a stored resource cannot claim it", f"{change.resource_type}.url")]
    return []


HOOK = IptWriteHook()
