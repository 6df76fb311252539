"""OperationOutcome issues and the one exception hierarchy that carries them.

Every error the server answers with is a FHIRError: an HTTP status plus OperationOutcome issues whose
`expression` is FHIRPath (http://hl7.org/fhir/R4/operationoutcome.html). The API edge turns it into a
response; nothing else needs to know about HTTP.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

FHIRPATH_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # an element name FHIRPath takes as it is


def fhirpath_name(key: str) -> str:
    """A JSON property name as a FHIRPath member of an issue's expression: itself when it is an identifier,
    else a delimited identifier (`` `a b` ``), so that the expression still parses."""
    if FHIRPATH_IDENTIFIER.fullmatch(key):
        return key
    return "`" + key.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue. `code` is from http://hl7.org/fhir/issue-type."""

    severity: str  # fatal | error | warning | information
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict:
        issue: dict = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue

    @property
    def is_error(self) -> bool:
        return self.severity in ("error", "fatal")


def error(code: str, diagnostics: str, *expression: str) -> Issue:
    return Issue("error", code, diagnostics, tuple(e for e in expression if e))


def warning(code: str, diagnostics: str, *expression: str) -> Issue:
    return Issue("warning", code, diagnostics, tuple(e for e in expression if e))


def information(diagnostics: str, code: str = "informational") -> Issue:
    return Issue("information", code, diagnostics)


def operation_outcome(issues: Iterable[Issue]) -> dict:
    issues = list(issues) or [information("All OK")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


@dataclass
class FHIRError(Exception):
    """An expected failure: answered with `status` and an OperationOutcome of `issues`."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.status, "; ".join(i.diagnostics for i in self.issues))

    @classmethod
    def of(cls, status: int, code: str, diagnostics: str, *expression: str) -> "FHIRError":
        return cls(status, [error(code, diagnostics, *expression)])


def bad_request(diagnostics: str, *expression: str, code: str = "invalid") -> FHIRError:
    return FHIRError.of(400, code, diagnostics, *expression)


def read_only(diagnostics: str, *expression: str) -> FHIRError:
    """405 for a write to what can only be read, with the Allow header RFC 9110 15.5.6 asks of a 405."""
    return _not_allowed(diagnostics, ("GET", "HEAD"), expression)


def method_not_allowed(method: str, path: str, allowed: tuple[str, ...] | list[str], *expression: str) -> FHIRError:
    """405 for a method no route at `path` serves, naming and allowing (Allow) the methods that do."""
    return _not_allowed(f"{method} is not allowed on {path}; allowed: {', '.join(allowed)}", allowed, expression)


def _not_allowed(diagnostics: str, allowed: tuple[str, ...] | list[str], expression: tuple[str, ...]) -> FHIRError:
    err = FHIRError.of(405, "not-supported", diagnostics, *expression)
    err.headers["Allow"] = ", ".join(allowed)
    return err


def not_found(diagnostics: str) -> FHIRError:
    return FHIRError.of(404, "not-found", diagnostics)


def gone(diagnostics: str) -> FHIRError:
    return FHIRError.of(410, "deleted", diagnostics)


def conflict(diagnostics: str, code: str = "conflict") -> FHIRError:
    return FHIRError.of(409, code, diagnostics)


def precondition_failed(diagnostics: str) -> FHIRError:
    return FHIRError.of(412, "conflict", diagnostics)


def multiple_matches(diagnostics: str) -> FHIRError:
    """412 for conditional criteria that match more than the one resource the interaction needs."""
    return FHIRError.of(412, "multiple-matches", diagnostics)


def unprocessable(issues: list[Issue]) -> FHIRError:
    return FHIRError(422, issues)
