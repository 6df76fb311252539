"""Parse search request parameters into clauses, checked against the registry (no SQL here).

http://hl7.org/fhir/R4/search.html: AND = repeated parameter, OR = comma-separated values,
`\\` escapes `,` `$` `|`. Malformed values and unsupported modifiers raise 400; unknown parameters are
collected so the caller can ignore-and-report or (Prefer: handling=strict, conditional operations) reject
them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from ipt_fhir.fhir.outcome import FHIRError, bad_request, error
from ipt_fhir.fhir.resource_types import REST_TYPES

from .registry import MODIFIERS, PREFIXES, SearchParam, registry
from .values import date_range, normalise_short

RESULT_PARAMS = {
    "_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total", "_page", "_format",
    "_pretty", "_contained", "_containedType", "_since", "_type",
}
ANY = object()  # token system not given: any system matches


class UnknownParameter(Exception):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


def unsupported_modifier(name: str, reason: str) -> FHIRError:
    """A known parameter with a modifier we do not implement for it. Never ignored, unlike an unknown
    parameter: a modifier changes what the parameter means, so dropping it would answer another question
    (search.html#modifiers: servers "SHALL reject" it "using an HTTP 400 error")."""
    return bad_request(reason, name, code="not-supported")


@dataclass
class Clause:
    """One AND term. kind: param | id | chain | has."""

    kind: str
    name: str
    param: SearchParam | None = None
    modifier: str | None = None
    values: list[Any] = field(default_factory=list)  # parsed OR values
    targets: tuple[str, ...] = ()  # chain: candidate target types
    inner: list["Clause"] = field(default_factory=list)  # chain: one clause per target type; has: [clause]
    source_type: str = ""  # has


def split_escaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], "", 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in ",$|\\":
            cur += "\\" + text[i + 1]
            i += 2
            continue
        if ch == sep:
            out.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    out.append(cur)
    return out


def unescape(text: str) -> str:
    return re.sub(r"\\([,$|\\])", r"\1", text)


def _prefix(value: str, ptype: str, name: str) -> tuple[str, str]:
    if len(value) >= 2 and value[:2].isalpha() and value[:2].islower():
        if value[:2] in PREFIXES:
            return value[:2], value[2:]
        # Two lowercase letters are a prefix only if they are one (search.html#prefix); a value that starts
        # with others is simply no valid {ptype}, which is what the client needs to hear.
        raise bad_request(f"Invalid {ptype} value in {name}={value}: it must be a {ptype}, optionally after a "
                          f"prefix ({', '.join(sorted(PREFIXES))})", name)
    return "eq", value


def parse_number(text: str, name: str) -> tuple[float, float, float]:
    """(value, low, high): the implicit precision range of a search number (search.html#number: 100 ->
    [99.5, 100.5), 100.00 -> [99.995, 100.005)). In exponent form the range is a digit finer than the
    digits written, as that table has it: 1e2 -> [95, 105)."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise bad_request(f"'{text}' is not a number in {name}", name) from None
    if not d.is_finite():
        raise bad_request(f"'{text}' is not a number in {name}", name)
    exp = int(d.as_tuple().exponent) - (1 if "e" in text.lower() else 0)
    half = Decimal(5).scaleb(exp - 1)
    value, lo, hi = float(d), float(d - half), float(d + half)
    # Indexed values are doubles, 15-17 significant digits: a range finer than their spacing rounds to a
    # single point, [v, v), and held nothing, not even the value as written (87.62960243186684, copied
    # from a resource). It holds that double at least.
    if hi <= value:
        hi = math.nextafter(value, math.inf)
    lo = min(lo, value)
    return value, lo, hi


def parse_value(p: SearchParam, modifier: str | None, raw: str, name: str) -> Any:
    t = p.type
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise bad_request(f"{name} must be true or false", name)
        return raw == "true"
    if t == "token":
        if modifier in ("text",):
            return normalise_short(unescape(raw))
        if modifier in ("in", "not-in", "of-type"):
            return unescape(raw)
        if "|" in raw.replace("\\|", ""):
            sys_, code = split_escaped(raw, "|")[:2] if raw.count("|") - raw.count("\\|") == 1 else (None, None)
            if sys_ is None:
                raise bad_request(f"Malformed token {name}={raw}", name)
            return (unescape(sys_) if sys_ else None, unescape(code) if code else None)
        return (ANY, unescape(raw))
    if t == "string":
        return unescape(raw)
    if t == "uri":
        return unescape(raw)
    if t == "date":
        prefix, rest = _prefix(raw, t, name)
        rng = date_range(rest)
        if rng is None:
            raise bad_request(f"'{rest}' is not a valid date in {name}={raw}", name)
        return prefix, rng[0], rng[1]
    if t == "number":
        prefix, rest = _prefix(raw, t, name)
        return (prefix, *parse_number(rest, name))
    if t == "quantity":
        prefix, rest = _prefix(raw, t, name)
        parts = [unescape(x) for x in split_escaped(rest, "|")]
        if len(parts) not in (1, 3):
            raise bad_request(f"Malformed quantity {name}={raw}", name)
        num = parse_number(parts[0], name)
        system = parts[1] or None if len(parts) == 3 else None
        code = parts[2] or None if len(parts) == 3 else None
        return (prefix, *num, system, code)
    if t == "reference":
        return unescape(raw)
    if t == "composite":  # each component keeps its escapes: its own type's parser splits on `|` and unescapes
        return split_escaped(raw, "$")
    raise UnknownParameter(name, f"search parameter type {t} is not supported")


# References a parameter may follow, its chain steps and _has levels together: each is one more nested
# subquery, and SQLite's parser refuses the SQL of seven (a 500 before this limit).
MAX_NESTING = 4
# From a parameter whose values may be named by url (canonical, uri: path_types.names_by_url), whose SQL
# looks into what follows it once more for those (store/search_sql.py): it grows threefold a step, and
# SQLite's parser refused three.
MAX_NESTING_BY_URL = 2

# `_id` values are one IN list of bound values, each a variable of the statement: SQLite takes at most
# 32,766 in all (a 500 beyond, before this limit), PostgreSQL 65,535.
MAX_ID_VALUES = 10_000

# Each value of a parameter is one more OR in the SQL, and SQLite refuses expressions nested deeper than
# 1000 (a chain of ORs nests one level per value), which a list of ~450 codes reached. `_id` is exempt:
# its values are one IN list.
MAX_VALUES_PER_PARAMETER = 100


def _values(raw: str, name: str) -> list[str]:
    values = split_escaped(raw, ",")
    if len(values) > MAX_VALUES_PER_PARAMETER:
        raise FHIRError(400, [error(
            "too-costly", f"{name} has {len(values)} values; a parameter takes at most {MAX_VALUES_PER_PARAMETER} "
                          "(split the search; long lists of ids can go in _id)", name)])
    return values


def _may_be_identifier(resource_type: str, p: SearchParam) -> bool:
    """:of-type is defined for Identifiers only (search.html#modifiers). False only when the parameter's
    elements are known and none is an Identifier (Patient.gender, Observation.code)."""
    from .indexer import element_types  # the indexer plans types from the validator's compiled elements

    types = element_types(resource_type, p)
    return not types or "Identifier" in types


@lru_cache(maxsize=None)
def _is_boolean(resource_type: str, code: str) -> bool:
    """Whether a token parameter reaches boolean elements only (Patient.active)."""
    from .indexer import element_types

    p = registry().get(resource_type, code)
    return p is not None and element_types(resource_type, p) == {"boolean"}


class Parser:
    def __init__(self, base_url: str = "") -> None:
        self.reg = registry()
        self.base_url = base_url.rstrip("/")

    def parse(self, resource_type: str, name: str, raw: str) -> Clause:
        """One request parameter -> a clause. Raises UnknownParameter or FHIRError(400)."""
        if name.startswith("_has:"):
            return self._has(resource_type, name, raw)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        modifier = modifier or None
        if code == "_id":
            if modifier == "missing":
                return Clause("id", name, modifier="missing", values=[parse_value(_ID_PARAM, "missing", raw, name)])
            if modifier:
                raise unsupported_modifier(name, f"modifier :{modifier} is not supported on _id")
            if dot:
                raise UnknownParameter(name, "_id is not a reference parameter, so it cannot be chained")
            ids = split_escaped(raw, ",")
            if len(ids) > MAX_ID_VALUES:
                raise FHIRError(400, [error("too-costly", f"{name} has {len(ids)} values; it takes at most "
                                                          f"{MAX_ID_VALUES} (split the search)", name)])
            return Clause("id", name, values=[unescape(v) for v in ids])
        p = self.reg.get(resource_type, code)
        if p is None:
            raise UnknownParameter(name, f"{code} is not a known search parameter of {resource_type}")
        if dot:
            if p.type != "reference":
                raise bad_request(f"{code} is not a reference parameter, so it cannot be chained", name)
            _refuse_deep(name, resource_type, code)
            targets = self._targets(p, modifier, name)
            inner = []
            for t in targets:
                try:
                    inner.append((t, self._parse_inner(t, rest, raw, name)))
                except UnknownParameter:
                    continue
            if not inner:
                raise UnknownParameter(name, f"no target of {code} has a search parameter {rest}")
            return Clause("chain", name, param=p, targets=tuple(t for t, _ in inner), inner=[c for _, c in inner])
        if modifier is not None:
            if p.type == "reference" and modifier not in ("identifier", "missing"):
                self._targets(p, modifier, name)
            elif modifier not in MODIFIERS.get(p.type, ()):
                raise unsupported_modifier(
                    name, f"modifier :{modifier} is not supported on {p.type} parameter {code} of {resource_type}")
        if modifier == "missing":
            return Clause("param", name, param=p, modifier=modifier, values=[parse_value(p, modifier, raw, name)])
        if modifier == "identifier" and p.type == "reference":
            tok = SearchParam(p.code + ":identifier", "token", p.resource_type, p.url, None)
            return Clause("param", name, param=tok, values=[parse_value(tok, None, v, name) for v in _values(raw, name)])
        if modifier == "of-type":
            if not _may_be_identifier(resource_type, p):
                raise unsupported_modifier(name, f":of-type applies to Identifier values; {code} of {resource_type} has none")
            tok = SearchParam(p.code + ":of-type", "token", p.resource_type, p.url, None)
            vals = []
            for v in _values(raw, name):
                if len(split_escaped(v, "|")) != 3:
                    raise bad_request(f"{name} needs system|code|value", name)
                vals.append(unescape(v))
            return Clause("param", name, param=tok, modifier="of-type", values=vals)
        values = _values(raw, name)
        if p.type == "token" and modifier in (None, "not") and _is_boolean(resource_type, code):
            for v in values:
                if v not in ("true", "false"):  # boolean tokens have no system (search.html#token)
                    raise bad_request(f"{name} takes true or false, not '{v}'", name)
        return Clause("param", name, param=p, modifier=modifier,
                      values=[parse_value(p, modifier, v, name) for v in values])

    def _targets(self, p: SearchParam, modifier: str | None, name: str) -> tuple[str, ...]:
        if modifier:
            if modifier not in REST_TYPES:
                raise unsupported_modifier(
                    name, f"modifier :{modifier} is not supported on reference parameter {p.code}: "
                          "it takes :identifier, :missing or a resource type")
            if p.targets and modifier not in p.targets:
                raise bad_request(f"{modifier} is not a target type of {p.code}", name)
            return (modifier,)
        return p.targets or ()

    def _has(self, resource_type: str, name: str, raw: str) -> Clause:
        # _has:Observation:patient:code=x  |  _has:Observation:patient:_has:AuditEvent:entity:agent=x
        parts = name.split(":", 3)
        if len(parts) < 4:
            raise bad_request(f"Malformed {name}: expected _has:Type:reference:parameter", name)
        _, src, ref, rest = parts
        if src not in REST_TYPES:
            raise bad_request(f"Unknown resource type {src} in {name}", name)
        rp = self.reg.get(src, ref)
        if rp is None or rp.type != "reference":
            raise bad_request(f"{ref} is not a reference parameter of {src}", name)
        if rp.targets and resource_type not in rp.targets:
            raise bad_request(f"{src}.{ref} does not refer to {resource_type}", name)
        _refuse_deep(name, src, ref)
        inner = self._parse_inner(src, rest, raw, name)
        return Clause("has", name, param=rp, inner=[inner], source_type=src)

    def _parse_inner(self, resource_type: str, inner_name: str, raw: str, name: str) -> Clause:
        """The inner parameter of a chain or _has; its errors name the parameter as the request wrote it."""
        try:
            return self.parse(resource_type, inner_name, raw)
        except FHIRError as exc:
            issues = [replace(issue, expression=(name,)) for issue in exc.issues]
            raise FHIRError(exc.status, issues, exc.headers) from None


def _refuse_deep(name: str, resource_type: str, code: str) -> None:
    """MAX_NESTING (MAX_NESTING_BY_URL from a url-named parameter `code` of `resource_type`), checked once
    that parameter is known (an unknown one is ignored under lenient handling, however deep). Every chain
    step and _has level parses its own rest, so a url-named parameter inside a chain is checked too."""
    from .path_types import names_by_url

    levels = name.count(".") + name.count("_has:")
    if levels <= MAX_NESTING_BY_URL:
        return
    if levels > MAX_NESTING:
        raise FHIRError(400, [error("too-costly", f"{name} follows {levels} references (chains and _has); this "
                                                  f"server follows at most {MAX_NESTING} in one parameter", name)])
    if names_by_url(resource_type, code):
        raise FHIRError(400, [error("too-costly", f"{name} follows {levels} references from {code}, whose values "
                                                  f"may be named by url (canonical); this server follows at most "
                                                  f"{MAX_NESTING_BY_URL} from such a parameter", name)])


_ID_PARAM = SearchParam("_id", "token", "Resource", "http://hl7.org/fhir/SearchParameter/Resource-id", "Resource.id")


def parse_positive_int(value: str, name: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise bad_request(f"{name} must be a non-negative integer, got '{value}'", name) from None
    if n < 0:
        raise bad_request(f"{name} must be a non-negative integer, got '{value}'", name)
    return n


__all__ = ["Clause", "Parser", "UnknownParameter", "RESULT_PARAMS", "ANY", "FHIRError", "parse_positive_int"]
