"""Turn a resource into index rows, per index table, using the registry's compiled extractors.

Pure: no SQL. One plan per resource type is compiled on first use and reused for every write.
"""
from __future__ import annotations

from functools import lru_cache
from itertools import product
from typing import Any, Callable

from .extract import (
    Extractor, compile_relative, date_values, extractor_for, identifier_type_codes, number_values,
    quantity_values, reference_values, string_values, token_values, uri_values,
)
from .registry import SearchParam, registry, split_union
from .values import STRING_INDEX_LENGTH, normalise

Rows = dict[str, list[tuple]]


def _component_value_fn(cparam: SearchParam) -> Callable[[Any, Any], list[tuple]]:
    """Component values as (a, b, low, high)."""
    t = cparam.type
    if t == "token":
        return lambda v, h: [(s, c, None, None) for s, c, _ in token_values(v, h) if c is not None]
    if t == "string":
        return lambda v, h: [(normalise(s), None, None, None) for s in string_values(v, h)]
    if t == "date":
        return lambda v, h: [(None, None, float(lo), float(hi)) for lo, hi in date_values(v, h)]
    if t == "number":
        return lambda v, h: [(None, None, lo, hi) for lo, hi in number_values(v, h)]
    if t == "quantity":
        return lambda v, h: [(s, c, lo, hi) for lo, hi, s, c in quantity_values(v, h)]
    if t == "reference":
        return lambda v, h: [(tt, ti, None, None) if ti else (u, None, None, None)
                             for tt, ti, _, u in reference_values(v, h)]
    if t == "uri":
        return lambda v, h: [(u, None, None, None) for u in uri_values(v, h)]
    return lambda v, h: []


@lru_cache(maxsize=None)
def plan_for(resource_type: str) -> list[tuple[str, str, Any, Any, str | None]]:
    """[(param code, type, extractor, composite component fns, a token's implicit code system)] for the
    indexed params of a type.

    `_id` and `_lastUpdated` are columns of the resource row. A reference alias (registry
    `reference_alias`, e.g. `patient` = `subject` narrowed to Patient) is planned as type
    "reference-identifier": its references are its base's rows, only its `:identifier` tokens are its own.
    """
    plan = []
    reg = registry()
    for code, p in sorted(reg.params(resource_type).items()):
        if code in ("_id", "_lastUpdated"):
            continue
        ext = extractor_for(resource_type, code)
        if ext is None:
            continue
        if reg.reference_alias(resource_type, code):
            plan.append((code, "reference-identifier", ext, None, None))
            continue
        if p.type == "date" and element_types(resource_type, p) == {"instant"}:
            ext = _typed(ext, "instant")
        comps = None
        if p.type == "composite":
            comps = []
            for url, expr in p.components:
                cp = registry().component_param(resource_type, url)
                if cp is None:
                    comps = None
                    break
                comps.append((compile_relative(expr), _component_value_fn(cp)))
            if not comps:
                continue
        plan.append((code, p.type, ext, comps, implicit_system(resource_type, p) if p.type == "token" else None))
    return plan


def _typed(ext: Extractor, type_name: str) -> Extractor:
    """`ext` with its hint-less values hinted `type_name`: a plain path (`DiagnosticReport.issued`) gives
    no hint, as a choice element's key does (`effectiveInstant`), but its element's type says the same."""
    return lambda resource: [(v, h or type_name) for v, h in ext(resource)]


def _element_props(resource_type: str, param: SearchParam) -> list | None:
    """The elements (validator Props) a parameter's expression reaches when every union branch is a plain
    path of named elements from the resource (`Patient.gender`); None for anything else (choices, `as`,
    `where`, paths from Resource)."""
    from ipt_fhir.fhir.validation.compiler import type_node

    props = []
    for path in (part.strip() for part in split_union(param.expression or "")):
        steps = path.split(".")
        if len(steps) < 2 or steps[0] != resource_type or not all(step.isidentifier() for step in steps):
            return None
        node, prop = type_node(resource_type), None
        for step in steps[1:]:
            prop = node.props.get(step) if node is not None else None
            if prop is None:
                return None
            node = prop.node
        props.append(prop)
    return props


def element_types(resource_type: str, param: SearchParam) -> set[str]:
    """The FHIR types of the plain elements a parameter reaches (`{"instant"}` for
    `DiagnosticReport.issued`); empty when its expression is not made of plain paths."""
    return {prop.type for prop in _element_props(resource_type, param) or ()}


def implicit_system(resource_type: str, param: SearchParam) -> str | None:
    """The code system of a token parameter whose values are plain `code` elements bound to a value set
    drawn from one code system (Patient.gender: http://hl7.org/fhir/administrative-gender). For a code,
    "the system is implicit (defined in the value set)" (search.html#token); indexed with it, a search
    naming the system (`gender=http://hl7.org/fhir/administrative-gender|male`) matches, and one with
    the code alone still does. None for anything else, including unions over different systems."""
    from ipt_fhir.fhir.validation.terminology import expansion

    props = _element_props(resource_type, param)
    if not props:
        return None
    systems: set[str] = set()
    for prop in props:
        if prop.type != "code" or not prop.elem.binding:
            return None
        codes = expansion(prop.elem.binding.split("|")[0])
        if codes is None or len(codes) != 1:
            return None
        systems.update(codes)
    return systems.pop() if len(systems) == 1 else None


def index_rows(resource_type: str, resource: dict) -> Rows:
    """Rows per table kind; each row is (param, *value columns) in the table's column order."""
    tok: list[tuple] = []
    st: list[tuple] = []
    dt: list[tuple] = []
    num: list[tuple] = []
    qty: list[tuple] = []
    ref: list[tuple] = []
    uri: list[tuple] = []
    rows: Rows = {"token": tok, "string": st, "date": dt, "number": num, "quantity": qty, "reference": ref,
                  "uri": uri, "composite": []}
    for code, ptype, ext, comps, implicit in plan_for(resource_type):
        items = ext(resource)
        if not items:
            continue
        if ptype == "token":
            for v, h in items:
                for s, c, t in token_values(v, h):
                    tok.append((code, implicit if s is None and type(v) is str else s, c, t))
                if isinstance(v, dict) and "type" in v:  # only Identifiers have :of-type codes
                    for combined in identifier_type_codes(v):
                        tok.append((code + ":of-type", None, combined, None))
        elif ptype == "reference" or ptype == "reference-identifier":
            for v, h in items:
                if ptype == "reference":
                    for row in reference_values(v, h):
                        ref.append((code, *row))
                if isinstance(v, dict) and isinstance(v.get("identifier"), dict):
                    for s, c, t in token_values(v["identifier"], "Identifier"):
                        tok.append((code + ":identifier", s, c, t))
        elif ptype == "string":
            for v, h in items:
                for s in string_values(v, h):
                    n = normalise(s)
                    st.append((code, n[:STRING_INDEX_LENGTH], s, n))
        elif ptype == "date":
            for v, h in items:
                for lo, hi in date_values(v, h):
                    dt.append((code, lo, hi))
        elif ptype == "uri":
            for v, h in items:
                for u in uri_values(v, h):
                    uri.append((code, u))
        elif ptype == "number":
            for v, h in items:
                for lo, hi in number_values(v, h):
                    num.append((code, lo, hi))
        elif ptype == "quantity":
            for v, h in items:
                for q in quantity_values(v, h):
                    qty.append((code, *q))
        elif ptype == "composite":
            written = len(rows["composite"])
            for node, _ in items:
                per_comp = []
                for rel, fn in comps:
                    vals = [cv for v, h in rel(node, resource) for cv in fn(v, h)]
                    if not vals:
                        break
                    per_comp.append(vals)
                else:
                    for combo in product(*per_comp):
                        flat: list = []
                        for cv in combo:
                            flat.extend(cv)
                        flat.extend([None] * (12 - len(flat)))
                        rows["composite"].append((code, *flat))
            if len(rows["composite"]) == written and any(node is not resource for node, _ in items):
                # The element is there, yet no node has a value for every component (a code with text
                # only, a value of a type no component reads): one row without values, so that `:missing`
                # sees the parameter present (search.html#modifiers). No value search matches its NULLs.
                # Not for a composite of the resource itself (Observation's code-value-quantity): that
                # "element" is always there, and whether it has a value is what `:missing` asks.
                rows["composite"].append((code, *[None] * 12))
    return rows
