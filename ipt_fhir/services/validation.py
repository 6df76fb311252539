"""The one validation gate every write passes: base R4 rules (400) and claimed profiles (422)."""
from __future__ import annotations

from ipt_fhir.fhir.outcome import FHIRError, Issue
from ipt_fhir.fhir.validation import validate_profiles, validate_resource


def validate_for_write(resource: object, resource_type: str, *, conditional_references: bool = False) -> list[Issue]:
    """Raise a 400 for anything the base specification forbids and a 422 for profile violations;
    return the warnings, which are reported with the success. `conditional_references`: the writer
    resolves `Type?criteria` references (Bundle entries, imports); a plain write would store them as sent."""
    issues = validate_resource(resource, expected_type=resource_type, conditional_references=conditional_references)
    if any(i.is_error for i in issues):
        raise FHIRError(400, issues)
    assert isinstance(resource, dict)
    profile_issues = validate_profiles(resource)
    if any(i.is_error for i in profile_issues):
        raise FHIRError(422, issues + profile_issues)
    return issues + profile_issues
