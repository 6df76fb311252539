"""The $validate operation (http://hl7.org/fhir/R4/resource-operation-validate.html).

Problems are reported as issues of a 200 OperationOutcome, never as HTTP errors: the same base-spec
validator, profile validator and business rules that guard every write, without writing anything.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ipt_fhir.fhir.outcome import FHIRError, Issue, bad_request, error, information
from ipt_fhir.fhir.validation import can_check, validate_profiles, validate_resource
from ipt_fhir.services import write_hooks
from ipt_fhir.fhir.resource_types import require_rest_type
from ipt_fhir.store import resources as repo
from ipt_fhir.store.database import Database
from ipt_fhir.fhir.jsonio import load_stored

MODES = ("create", "update", "delete", "profile")


@dataclass
class ValidateRequest:
    resource: object | None
    mode: str | None
    profile: str | None


def parse_validate_body(body: object, query: dict[str, str]) -> ValidateRequest:
    """The body is either the resource itself or a Parameters with resource, mode and profile."""
    mode, profile = query.get("mode"), query.get("profile")
    if isinstance(body, dict) and body.get("resourceType") == "Parameters" and _is_validate_parameters(body):
        resource = None
        for p in body.get("parameter", []):
            name = p.get("name")
            if name == "resource":
                resource = p.get("resource")
            elif name == "mode":
                mode = p.get("valueCode") or p.get("valueString")
            elif name == "profile":
                profile = p.get("valueUri") or p.get("valueCanonical") or p.get("valueString")
        return ValidateRequest(resource, mode, profile)
    return ValidateRequest(body, mode, profile)


def _is_validate_parameters(body: dict) -> bool:
    names = {p.get("name") for p in body.get("parameter", []) if isinstance(p, dict)}
    return bool(names) and names <= {"resource", "mode", "profile"}


class ValidateOperation:
    def __init__(self, db: Database) -> None:
        self.db = db

    def validate(self, resource_type: str, request: ValidateRequest, resource_id: str | None = None) -> list[Issue]:
        require_rest_type(resource_type)
        if request.mode is not None and request.mode not in MODES:
            raise bad_request(f"mode must be one of {', '.join(MODES)}, not '{request.mode}'", code="value")
        if request.mode == "delete":
            return self._validate_delete(resource_type, resource_id)
        resource = request.resource
        if resource is None:
            if resource_id is None:
                raise bad_request("$validate needs a resource to validate", code="required")
            resource = self._stored(resource_type, resource_id)
        if request.profile and not can_check(request.profile, resource_type):
            # Resource-validate, parameter profile: "If a profile is nominated, and the server cannot
            # validate against the nominated profile, it SHALL return an error."
            return [error("not-supported", f"Profile {request.profile} is not known to this server, so it cannot "
                                           f"validate against it", "profile")]
        # As the write of that mode would (a plain create or update stores a conditional reference as it
        # is, so refuses it); without a mode the resource may be bound for a transaction, which resolves one.
        issues = list(validate_resource(resource, expected_type=resource_type,
                                        conditional_references=request.mode is None))
        if isinstance(resource, dict) and not any(i.is_error for i in issues):
            issues += validate_profiles(resource, [request.profile] if request.profile else None)
            if request.profile:
                issues += validate_profiles(resource)
            issues += self._mode_issues(resource_type, resource, request.mode, resource_id)
        return issues or [information("Validation successful: no issues found")]

    def _mode_issues(self, resource_type: str, resource: dict, mode: str | None, resource_id: str | None) -> list[Issue]:
        issues: list[Issue] = []
        if mode == "update":
            target = resource_id or resource.get("id")
            if not resource.get("id"):
                issues.append(error("required", "An update needs the resource id", f"{resource_type}.id"))
            elif resource_id and resource.get("id") != resource_id:
                issues.append(error("invalid", f"Resource id '{resource.get('id')}' does not match '{resource_id}'",
                                    f"{resource_type}.id"))
            previous = self._current_or_none(resource_type, target) if target else None
        elif mode == "create":  # a create ignores the id in the body (http.html#create): the new one is ours
            target, previous = "validate", None
        else:  # no mode: the resource may be bound for an update, which keeps its id
            target, previous = resource.get("id") or "validate", None
        change = write_hooks.Change(resource_type, str(target), "PUT" if mode == "update" else "POST",
                                    resource, previous)
        return issues + self._hook_issues(change, refusals_are_errors=mode is not None)

    def _hook_issues(self, change: write_hooks.Change, refusals_are_errors: bool = True) -> list[Issue]:
        """What the write hooks say of `change`. A hook that would refuse the interaction itself (a write to a
        resource this server publishes read-only: 405) is reported as issues, since $validate writes nothing;
        without a mode, which interaction follows is unknown, so such a refusal is only a warning."""
        issues: list[Issue] = []
        with self.db.read() as conn:
            for hook in write_hooks.registered():
                try:
                    issues.extend(hook.check(conn, change))
                except FHIRError as exc:
                    issues.extend(i if refusals_are_errors else replace(i, severity="warning") for i in exc.issues)
        return issues

    def _validate_delete(self, resource_type: str, resource_id: str | None) -> list[Issue]:
        if resource_id is None:
            raise bad_request("mode=delete needs an instance: POST [type]/[id]/$validate", code="required")
        previous = self._stored(resource_type, resource_id)
        issues = self._hook_issues(write_hooks.Change(resource_type, resource_id, "DELETE", None, previous))
        return issues or [information(f"{resource_type}/{resource_id} can be deleted")]

    def _stored(self, resource_type: str, resource_id: str) -> dict:
        found = self._current_or_none(resource_type, resource_id)
        if found is None:
            raise FHIRError.of(404, "not-found", f"{resource_type}/{resource_id} is not known")
        return found

    def _current_or_none(self, resource_type: str, resource_id: str) -> dict | None:
        stored = repo.read_current(self.db, resource_type, resource_id)
        if stored is None or stored.deleted or stored.content is None:
            return None
        return load_stored(stored.content)
