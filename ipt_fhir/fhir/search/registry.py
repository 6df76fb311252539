"""The one search-parameter registry: built from the official R4 SearchParameter definitions.

It drives index extraction (the FHIRPath expression, specialised to each resource type), request
parsing (type, modifiers, comparators, targets), the SQL (which index table) and the
CapabilityStatement. Parameters whose meaning we do not implement (_text, _content, _query, _list,
_filter) are not registered, so they are reported as unsupported everywhere.
"""
from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from ipt_fhir.fhir.resource_types import RESOURCE_TYPES

BASE_URL = "http://hl7.org/fhir/SearchParameter/"
_WHERE_RESOLVE_IS = re.compile(r"^(.+)\.where\(resolve\(\) is (\w+)\)$")
# Common to every type: `_id` and `_lastUpdated` are columns of the resource row (no index rows); `_tag`,
# `_profile`, `_security` and `_source` are indexed from meta like any other parameter.
COMMON = ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source")
UNSUPPORTED_COMMON = ("_text", "_content", "_list", "_query", "_filter", "_has_unsupported")
INDEXED_TYPES = ("token", "string", "date", "number", "quantity", "reference", "uri", "composite")

# Which comparator-style prefixes each parameter type accepts on its values.
PREFIX_TYPES = ("number", "date", "quantity")
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")

# The modifiers the search SQL implements per parameter type; any other is a 400 (search.html#modifiers).
MODIFIERS = {
    "string": ("exact", "contains", "missing"),
    "token": ("not", "text", "of-type", "in", "not-in", "missing"),
    "reference": ("identifier", "missing"),  # plus :[type]
    "uri": ("below", "above", "missing"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "composite": ("missing",),
}


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str
    resource_type: str  # the type this entry is specialised for
    url: str
    expression: str | None
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()  # (definition url, relative expression)
    description: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _load(name: str):  # noqa: ANN202
    raw = resources.files("ipt_fhir.fhir").joinpath(f"definitions/{name}").read_bytes()
    return json.loads(gzip.decompress(raw))


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath union at its top level (not inside parentheses or quotes)."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quote = not quote
        elif quote:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def _root(part: str) -> str:
    p = part.lstrip("(")
    name = ""
    for ch in p:
        if ch.isalnum() or ch == "_":
            name += ch
        else:
            break
    return name


def specialise(expression: str | None, resource_type: str) -> str | None:
    """Keep only the union branches of a multi-base expression that apply to `resource_type`."""
    if not expression:
        return expression
    parts = split_union(expression)
    mine = [p for p in parts if _root(p) in (resource_type, "Resource", "DomainResource")]
    if not mine:
        # e.g. a bare relative path; keep it whole rather than drop the parameter
        if all(not _root(p)[:1].isupper() for p in parts):
            return expression
        return None
    return " | ".join(mine)


class Registry:
    def __init__(self) -> None:
        raw = _load("search-parameters.json.gz")
        self.by_url: dict[str, dict] = {p["url"]: p for p in raw}
        self.by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in RESOURCE_TYPES}
        common: list[dict] = []
        for p in raw:
            bases = p.get("base", [])
            if p["code"] in ("_text", "_content", "_query"):
                continue
            if p["type"] == "special":
                continue  # e.g. Location.near: needs geo maths we do not implement
            if "Resource" in bases or "DomainResource" in bases:
                common.append(p)
                continue
            for base in bases:
                if base not in self.by_type:
                    continue
                expr = specialise(p.get("expression"), base)
                if expr is None:
                    continue
                self.by_type[base][p["code"]] = self._make(p, base, expr)
        for t, table in self.by_type.items():
            for p in common:
                if p["code"] in COMMON:
                    table[p["code"]] = self._make(p, t, specialise(p.get("expression"), t))
        self.aliases = {t: _reference_aliases(table) for t, table in self.by_type.items()}

    @staticmethod
    def _make(p: dict, base: str, expr: str | None) -> SearchParam:
        return SearchParam(
            code=p["code"], type=p["type"], resource_type=base, url=p["url"], expression=expr,
            targets=tuple(p.get("target", ())),
            components=tuple((c["definition"], c["expression"]) for c in p.get("component", ())),
            description=(p.get("description") or "")[:500],
            extra={k: p[k] for k in ("comparator", "modifier", "multipleOr", "multipleAnd") if k in p},
        )

    def params(self, resource_type: str) -> dict[str, SearchParam]:
        return self.by_type.get(resource_type, {})

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.by_type.get(resource_type, {}).get(code)

    def reference_alias(self, resource_type: str, code: str) -> tuple[str, str] | None:
        """(base parameter, target type) when `code` is `base.where(resolve() is Type)` on this type.

        Such a parameter (`Observation.patient` = `Observation.subject.where(resolve() is Patient)`)
        matches exactly the base parameter's references whose target type is Type, so it has no
        reference index rows of its own: the SQL reads the base's rows with `target_type = Type`.
        A quarter of a typical clinical resource's reference rows were such duplicates."""
        return self.aliases.get(resource_type, {}).get(code)

    def stored_reference(self, resource_type: str, code: str) -> tuple[str, str | None]:
        """(param value in search_reference, required target type or None) for a reference parameter."""
        return self.aliases.get(resource_type, {}).get(code) or (code, None)

    def component_param(self, resource_type: str, definition_url: str) -> SearchParam | None:
        raw = self.by_url.get(definition_url)
        if raw is None:
            return None
        return self._make(raw, resource_type, None)


def _reference_aliases(params: dict[str, SearchParam]) -> dict[str, tuple[str, str]]:
    """code → (base code, target type) for the single-path reference parameters of one type that are
    another single-path reference parameter narrowed by `.where(resolve() is Type)`."""
    by_expression = {p.expression: code for code, p in params.items()
                     if p.type == "reference" and p.expression and len(split_union(p.expression)) == 1}
    aliases = {}
    for code, p in params.items():
        if p.type != "reference" or not p.expression or len(split_union(p.expression)) != 1:
            continue
        m = _WHERE_RESOLVE_IS.match(p.expression)
        if m and m.group(1) in by_expression:
            aliases[code] = (by_expression[m.group(1)], m.group(2))
    return aliases


@lru_cache(maxsize=1)
def registry() -> Registry:
    return Registry()


@lru_cache(maxsize=1)
def patient_compartment() -> dict[str, list[str]]:
    """Resource type -> the parameters that put a resource of that type in a Patient's compartment."""
    return _load("search-compartment-patient.json.gz")


@lru_cache(maxsize=None)
def patient_compartment_params(resource_type: str) -> tuple[str, ...]:
    """The search_reference `param` values whose rows targeting a Patient put a resource of this type in
    that patient's compartment: the compartment's parameters, an alias narrowed to Patient read as its
    base (one narrowed to another type has no such rows)."""
    stored = (registry().stored_reference(resource_type, c) for c in patient_compartment().get(resource_type, ()))
    return tuple(sorted({code for code, narrowed_to in stored if narrowed_to in (None, "Patient")}))
