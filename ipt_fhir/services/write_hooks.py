"""Extension point for rules and read models that ride along with every write.

The IPT layer registers a hook; the resource service calls every hook inside the unit of work, so
rule checks see a consistent database and read-model updates commit or roll back with the write.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Container, Mapping
from typing import Protocol

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.outcome import Issue


@dataclass(frozen=True, slots=True)
class Change:
    resource_type: str
    id: str
    method: str  # POST | PUT | PATCH | DELETE
    resource: dict | None  # the new version as stored (None when deleted)
    previous: dict | None  # the version it replaces (None when new)
    # Checked on a transaction's final state: the resources ("Type/id") it writes after this one, which a
    # limit counted in write order (sessions of a plan) leaves out, to blame the write that crosses it.
    written_after: Container[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WrittenAfter:
    """The resources ("Type/id") a unit of work writes after its write number `current`, given the number of
    each one's last write: one mapping shared by all of its changes, so a Bundle's checks stay linear."""

    last_write: Mapping[str, int]
    current: int

    def __contains__(self, ref: object) -> bool:
        return self.last_write.get(ref, -1) > self.current  # type: ignore[call-overload]


class WriteHook(Protocol):
    def check(self, conn: Connection, change: Change) -> list[Issue]:
        """Business rules. Error issues refuse the write (422); warnings are returned with the success."""

    def after_write(self, conn: Connection, change: Change) -> None:
        """Same-transaction side effects, e.g. read models."""

    # Optional: `wants(resource_type, stored) -> bool`, False when check and after_write certainly do
    # nothing with this version (its stored JSON bytes). Paths holding only the stored bytes ($import)
    # then need not parse them; a hook without it is given every change.


_hooks: list[WriteHook] = []


def register(hook: WriteHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def registered() -> tuple[WriteHook, ...]:
    return tuple(_hooks)


def wanted(resource_type: str, stored: bytes) -> bool:
    """Whether any registered hook may act on this stored version (see WriteHook.wants)."""
    return any(getattr(hook, "wants", None) is None or hook.wants(resource_type, stored) for hook in _hooks)
