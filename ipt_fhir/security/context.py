"""Who is asking: the AccessContext of the current request, in a contextvar.

The HTTP dependency sets it once per request; the services read it where results are produced.
Threads started by `run_in_threadpool` copy the context, so service code sees the request's context.
Outside a request (CLI, tests calling services directly, auth off) the context is unrestricted.
"""
from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from .scopes import ScopeSet


@dataclass
class AccessContext:
    unrestricted: bool = False
    subject: str | None = None  # sub claim
    client_id: str | None = None
    issuer: str | None = None
    fhir_user: str | None = None  # fhirUser claim, e.g. Practitioner/123
    patient: str | None = None  # patient claim: the compartment patient/ scopes are confined to
    scopes: ScopeSet = field(default_factory=lambda: ScopeSet(None))
    sensitive: bool = False  # holds the extra scope for PSYTHPN / R labelled resources
    token_id: str | None = None  # jti

    @classmethod
    def unrestricted_context(cls) -> "AccessContext":
        return cls(unrestricted=True, sensitive=True)


_current: ContextVar[AccessContext | None] = ContextVar("ipt_fhir_access", default=None)


def current() -> AccessContext:
    ctx = _current.get()
    return ctx if ctx is not None else _UNRESTRICTED


def set_current(ctx: AccessContext | None):  # noqa: ANN201 - a contextvars.Token
    return _current.set(ctx)


def reset(token) -> None:  # noqa: ANN001
    _current.reset(token)


_UNRESTRICTED = AccessContext(unrestricted=True, sensitive=True)
