"""SMART App Launch scopes, v2 (`patient/CarePlan.rs`, `user/*.cruds`) and v1 (`patient/*.read`,
`user/Observation.write`, `user/*.*`), turned into permission checks per interaction and type.

Granular v2 scopes with search parameters (`patient/Observation.rs?category=…`) are not supported and
are ignored, which grants less, never more. AuditEvent is never covered by a `*` wildcard: reading the
audit trail needs a scope that names AuditEvent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# SMART v2 permission letters per FHIR interaction.
INTERACTION_LETTER = {
    "create": "c",
    "read": "r", "vread": "r", "history-instance": "r",
    "update": "u", "patch": "u",
    "delete": "d",
    "search": "s", "search-type": "s", "history-type": "s", "history-system": "s", "search-system": "s",
}
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")
AUDIT_TYPE = "AuditEvent"
LEVELS = ("patient", "user", "system")


@dataclass(frozen=True, slots=True)
class Scope:
    level: str  # patient | user | system
    resource_type: str  # a type or "*"
    letters: frozenset[str]


def parse_scope(text: str) -> Scope | None:
    """One scope string -> Scope, or None when it is not a SMART resource scope we honour."""
    m = _SCOPE.match(text)
    if m is None:
        return None
    level, rtype, perms = m.groups()
    if perms in _V1:
        letters = _V1[perms]
    elif re.fullmatch(r"c?r?u?d?s?", perms) and perms:
        letters = perms
    else:
        return None
    return Scope(level, rtype, frozenset(letters))


class ScopeSet:
    def __init__(self, raw: list[str] | str | None) -> None:
        if isinstance(raw, str):
            raw = raw.split()
        self.raw: tuple[str, ...] = tuple(raw or ())
        self.scopes = [s for s in (parse_scope(x) for x in self.raw) if s is not None]

    def __contains__(self, scope: str) -> bool:
        return scope in self.raw

    def level(self, interaction: str, resource_type: str) -> str | None:
        """The broadest level granting `interaction` on `resource_type`: 'system' or 'user' (any record the
        user may see), 'patient' (the token's patient compartment only), or None (not granted)."""
        letter = INTERACTION_LETTER.get(interaction)
        if letter is None:
            return None
        best = None
        for s in self.scopes:
            if letter not in s.letters:
                continue
            if s.resource_type != resource_type and not (s.resource_type == "*" and resource_type != AUDIT_TYPE):
                continue
            if best is None or LEVELS.index(s.level) > LEVELS.index(best):
                best = s.level
        return best

    def can(self, interaction: str, resource_type: str) -> bool:
        return self.level(interaction, resource_type) is not None

    def any_for(self, interaction: str) -> bool:
        letter = INTERACTION_LETTER.get(interaction)
        return any(letter in s.letters for s in self.scopes)
