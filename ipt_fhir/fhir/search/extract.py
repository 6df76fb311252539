"""Index extraction: evaluate a search parameter's FHIRPath on a resource and turn the results into
typed index values.

Most R4 expressions are plain paths (`CarePlan.subject`, `(Observation.value as Quantity)`,
`X.subject.where(resolve() is Patient)`); those run through a small native evaluator compiled once per
(type, parameter), which is ~50x faster than a general FHIRPath engine. Anything else goes to
fhirpathpy (the maintained FHIRPath implementation) with the R4 model. Both yield (value, type hint)
pairs; the hint is the choice-type suffix when known (valueQuantity -> "Quantity").
"""
from __future__ import annotations

import math
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable

from .registry import registry, split_union
from .values import MAX_TIME, MIN_TIME, NUMBER_MAX, NUMBER_MIN, date_range, normalise_short

Item = tuple[Any, "str | None"]
Extractor = Callable[[dict], list[Item]]

_AS_PAREN = re.compile(r"^\((.+) as (\w+)\)(?:\.(.+))?$")
_STEP_AS = re.compile(r"^(?:as|ofType)\((\w+)\)$")
_STEP_WHERE_REF = re.compile(r"^where\(resolve\(\) is (\w+)\)$")
_STEP_WHERE_EQ = re.compile(r"^where\((\w+) ?= ?'([^']*)'\)$")
_STEP_INDEX = re.compile(r"^(\w+)\[(\d+)\]$")
_NAME = re.compile(r"^\w+$")


def _split_steps(path: str) -> list[str] | None:
    steps, depth, cur = [], 0, ""
    for ch in path:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "." and depth == 0:
            steps.append(cur)
            cur = ""
        else:
            cur += ch
    steps.append(cur)
    return steps if all(steps) else None


def _compile_steps(steps: list[str]) -> list[tuple] | None:
    """("child", name, is_choice) | ("as", type) | ("ref", type) | ("eq", key, value) | ("index", n)."""
    ops: list[tuple] = []
    for s in steps:
        if _NAME.match(s):
            ops.append(("child", s, s in _choice_names()))
        elif m := _STEP_AS.match(s):
            ops.append(("as", m.group(1).lower()))
        elif m := _STEP_WHERE_REF.match(s):
            ops.append(("ref", m.group(1)))
        elif m := _STEP_WHERE_EQ.match(s):
            ops.append(("eq", m.group(1), m.group(2)))
        elif m := _STEP_INDEX.match(s):
            ops.append(("child", m.group(1), m.group(1) in _choice_names()))
            ops.append(("index", int(m.group(2))))
        else:
            return None
    return ops


def compile_path(part: str) -> tuple[str, list[tuple]] | None:
    """-> (root type, ops) for a path the native evaluator understands, else None. Also read for the
    element types a path reaches (path_types.py)."""
    m = _AS_PAREN.match(part)
    if m:
        inner = compile_path(m.group(1))
        if inner is None:
            return None
        rest = _compile_steps(_split_steps(m.group(3)) or [""]) if m.group(3) else []
        if rest is None:
            return None
        return inner[0], inner[1] + [("as", m.group(2).lower())] + rest
    steps = _split_steps(part)
    if not steps or not steps[0][:1].isupper() or not _NAME.match(steps[0]):
        return None
    ops = _compile_steps(steps[1:])
    if ops is None:
        return None
    return steps[0], ops


def _ref_type(ref: str) -> str | None:
    parts = ref.split("/")
    if len(parts) >= 2:
        if len(parts) >= 4 and parts[-2] == "_history":
            return parts[-4]
        return parts[-2]
    return None


@lru_cache(maxsize=1)
def _choice_names() -> frozenset[str]:
    """Element names that are a choice `[x]` somewhere in R4: only for these can an absent key mean a
    typed variant (valueQuantity, ...), so only these pay for a scan of the object's keys."""
    from ipt_fhir.fhir.validation.definitions import structures

    return frozenset(e["p"].rsplit(".", 1)[-1][:-3] for t in structures()["types"].values()
                     for e in t["elements"] if e["p"].endswith("[x]"))


@lru_cache(maxsize=1)
def _type_names() -> dict[str, str]:
    """Lower-case R4 type name -> its name in a choice element's key (`quantity` -> `Quantity`,
    `datetime` -> `DateTime`)."""
    from ipt_fhir.fhir.validation.definitions import structures

    return {t.lower(): t[0].upper() + t[1:] for t in structures()["types"]}


def _fuse_choice_as(ops: list[tuple]) -> list[tuple]:
    """`value.as(Quantity)` looks up `valueQuantity` instead of scanning every key of the object for
    `value…` variants and then dropping the other types (the scan dominated Observation indexing).
    Same items: a variant key is the element name plus the type's name, and `as` keeps exactly that."""
    out: list[tuple] = []
    for op in ops:
        if op[0] == "as" and out and out[-1][0] == "child" and out[-1][2] and op[1] in _type_names():
            name = out.pop()[1]
            out.append(("choice_as", name, name + _type_names()[op[1]], op[1]))
        else:
            out.append(op)
    return out


def _run(ops: list[tuple], items: list[Item]) -> list[Item]:
    for op in ops:
        kind = op[0]
        out: list[Item] = []
        if kind == "choice_as":
            name, key, want = op[1], op[2], op[3]
            hint = key[len(name):]
            for node, _ in items:
                if not isinstance(node, dict):
                    continue
                v = node.get(name)
                if v is not None:  # the plain element (not a choice here): `as` passes it as `want`
                    if isinstance(v, list):
                        out += [(x, want) for x in v if x is not None]
                    else:
                        out.append((v, want))
                    continue
                v = node.get(key)
                if v is not None:
                    if isinstance(v, list):
                        out += [(x, hint) for x in v]
                    else:
                        out.append((v, hint))
        elif kind == "child":
            name, choice = op[1], op[2]
            for node, _ in items:
                if not isinstance(node, dict):
                    continue
                v = node.get(name)
                if v is not None:
                    if isinstance(v, list):
                        out += [(x, None) for x in v if x is not None]
                    else:
                        out.append((v, None))
                elif choice:  # choice element: valueQuantity, effectivePeriod, ...
                    n = len(name)
                    for k, v in node.items():
                        if len(k) > n and k.startswith(name) and k[n].isupper():
                            if isinstance(v, list):
                                out += [(x, k[n:]) for x in v]
                            else:
                                out.append((v, k[n:]))
        elif kind == "as":
            want = op[1]
            out = [(v, h) for v, h in items if h is None or h.lower() == want]
            out = [(v, h or want) for v, h in out]
        elif kind == "ref":
            want = op[1]
            for v, h in items:
                if isinstance(v, dict):
                    r = v.get("reference")
                    if (isinstance(r, str) and _ref_type(r) == want) or (r is None and v.get("type") == want):
                        out.append((v, h))
        elif kind == "eq":
            key, val = op[1], op[2]
            out = [(v, h) for v, h in items if isinstance(v, dict) and v.get(key) == val]
        elif kind == "index":
            out = items[op[1]:op[1] + 1]
        items = out
        if not items:
            break
    return items


def _fhirpathpy_extractor(expression: str) -> Extractor:
    import fhirpathpy
    from fhirpathpy.models import models

    fn = fhirpathpy.compile(expression, model=models["r4"])

    def run(resource: dict) -> list[Item]:
        try:
            return [(v, None) for v in fn(resource) if v is not None]
        except Exception:  # noqa: BLE001 - a value the engine cannot evaluate simply yields no index row
            return []

    return run


def compile_expression(expression: str, resource_type: str) -> Extractor:
    """The extractor of a parameter's expression on resources of `resource_type`: the union branches
    rooted at that type (or at Resource/DomainResource), each a compiled path; fhirpathpy when any
    branch is beyond the native evaluator."""
    compiled = [compile_path(p) for p in split_union(expression)]
    if any(c is None for c in compiled):
        return _fhirpathpy_extractor(expression)
    runners = [_runner(ops) for root, ops in compiled  # type: ignore[misc]
               if root in (resource_type, "Resource", "DomainResource")]
    if len(runners) == 1:
        return runners[0]  # returns a fresh list, as below

    def run(resource: dict) -> list[Item]:
        out: list[Item] = []
        for fn in runners:
            out.extend(fn(resource))
        return out

    return run


def _runner(ops: list[tuple]) -> Extractor:
    """One compiled path as a function of the resource: plain child steps (most search parameters:
    `CarePlan.status`, `Observation.code`) get a loop of their own, the rest the general _run."""
    if all(op[0] == "child" and not op[2] for op in ops):
        return _child_path(tuple(op[1] for op in ops))
    ops = _fuse_choice_as(ops)
    return lambda resource: _run(ops, [(resource, None)])


def _child_path(names: tuple[str, ...]) -> Extractor:
    """_run for child steps of non-choice elements: same values, in the same order, all without a hint."""
    def run(resource: dict) -> list[Item]:
        items: list[Any] = [resource]
        for name in names:
            out: list[Any] = []
            for node in items:
                if isinstance(node, dict):
                    v = node.get(name)
                    if v is not None:
                        if isinstance(v, list):
                            out += [x for x in v if x is not None]
                        else:
                            out.append(v)
            if not out:
                return []
            items = out
        return [(v, None) for v in items]

    return run


_RESOURCE_VARIABLE = "%resource."


def compile_relative(expression: str) -> Callable[[Any, Any], list[Item]]:
    """A composite component expression, evaluated on one element of the composite's result: fn(element,
    resource). A branch starting with %resource reads the resource the element is in (MolecularSequence
    chromosome-variant-coordinate: `%resource.referenceSeq.chromosome` beside each variant)."""
    parts = split_union(expression)
    compiled = []
    for p in parts:
        from_resource = p.startswith(_RESOURCE_VARIABLE)
        if from_resource:
            p = p[len(_RESOURCE_VARIABLE):]
        m = _AS_PAREN.match(p) if p.startswith("(") else None
        steps = _split_steps(p) if m is None else None
        ops = _compile_steps(steps) if steps else None
        if ops is None:
            engine = _fhirpathpy_extractor(expression)
            return lambda node, resource: engine(node)
        compiled.append((from_resource, ops))

    def run(node: Any, resource: Any) -> list[Item]:
        out: list[Item] = []
        for from_resource, ops in compiled:
            out.extend(_run(ops, [(resource if from_resource else node, None)]))
        return out

    return run


@lru_cache(maxsize=None)
def extractor_for(resource_type: str, code: str) -> Extractor | None:
    p = registry().get(resource_type, code)
    if p is None or not p.expression:
        return None
    return compile_expression(p.expression, resource_type)


# ---------------------------------------------------------------- typed index values

_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def _num(v: Any) -> float | None:
    """A number as the index stores it: a double. A decimal beyond a double's range (`1e400` is valid FHIR)
    is indexed as the largest double of its sign; it stays exact in the stored resource."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, Decimal)):
        f = float(v)
        return f if math.isfinite(f) else (NUMBER_MAX if f > 0 else NUMBER_MIN)
    return None


# The value functions below return lists (one call per value on the write path; a generator would add
# its creation and a StopIteration to every one of them).

def token_values(v: Any, hint: str | None) -> list[tuple[str | None, str | None, str | None]]:
    """(system, code, text) rows of one token value; text is normalised display/text for :text."""
    if isinstance(v, bool):
        return [(None, "true" if v else "false", None)]
    if isinstance(v, str):
        return [(None, v, None)]
    if isinstance(v, (int, float, Decimal)):
        return [(None, str(v), None)]
    out: list[tuple[str | None, str | None, str | None]] = []
    if isinstance(v, dict):
        if "coding" in v or (("text" in v) and "value" not in v and "code" not in v):
            text = v.get("text")
            codings = v.get("coding") or []
            for c in codings:
                if isinstance(c, dict) and (c.get("code") is not None or c.get("system")):
                    disp = c.get("display") or text
                    out.append((c.get("system"), c.get("code"), normalise_short(disp) if disp else None))
            if text and not codings:
                out.append((None, None, normalise_short(text)))
            elif text:
                out.append((None, None, normalise_short(text)))
        elif "value" in v and (hint == "ContactPoint" or v.get("system") in _CONTACT_SYSTEMS):
            if isinstance(v.get("value"), str):
                out.append((None, v["value"], None))
        elif "value" in v or "type" in v:  # Identifier
            t = v.get("type")
            text = t.get("text") if isinstance(t, dict) else None
            val = v.get("value")
            if isinstance(val, str) or v.get("system"):
                out.append((v.get("system"), val if isinstance(val, str) else None,
                            normalise_short(text) if text else None))
        elif "code" in v or "system" in v:  # Coding, Quantity-as-token
            disp = v.get("display") or v.get("unit")
            out.append((v.get("system"), v.get("code"), normalise_short(disp) if isinstance(disp, str) else None))
    return out


def identifier_type_codes(v: Any) -> list[str]:
    """`system|code|value` strings for :of-type, one per Identifier.type coding."""
    out: list[str] = []
    if isinstance(v, dict) and isinstance(v.get("value"), str) and isinstance(v.get("type"), dict):
        for c in v["type"].get("coding") or []:
            if isinstance(c, dict) and c.get("code"):
                out.append(f"{c.get('system') or ''}|{c['code']}|{v['value']}")
    return out


# The string parts a string search matches in the complex types R4 string parameters reach (Patient.name,
# Practitioner.address, ...), as their SearchParameter definitions list them ("any of the string fields in
# the HumanName, including family, given, prefix, suffix and/or text"; Address: line, city, district,
# state, country, postalCode and/or text). `use` and `type` are codes, searched as tokens (address-use),
# and `id` is an element id: none of them is a string-search value.
_STRING_PARTS = {
    "HumanName": ("family", "given", "prefix", "suffix", "text"),
    "Address": ("line", "city", "district", "state", "postalCode", "country", "text"),
}


def _string_parts(v: dict, hint: str | None) -> tuple[str, ...]:
    """The string parts of one complex value. Plain paths (`Patient.name`) give no type hint, so the type
    is told from the parts present; a name or address given only as text has just `text`, a part of both.
    Any other complex type gets `text` only: whatever else it holds, its codes must not match a string."""
    if hint in _STRING_PARTS:
        return _STRING_PARTS[hint]
    for parts in _STRING_PARTS.values():
        if any(k in v for k in parts if k != "text"):
            return parts
    return ("text",)


def string_values(v: Any, hint: str | None) -> list[str]:
    if isinstance(v, str):
        return [v]
    out: list[str] = []
    if isinstance(v, dict):
        for k in _string_parts(v, hint):
            x = v.get(k)
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, list):
                out += [s for s in x if isinstance(s, str)]
    return out


# The type hints of an instant: a choice key's suffix (effectiveInstant) or `as(instant)`, and the
# indexer's hint for plain instant elements (indexer.plan_for).
_INSTANT = frozenset({"Instant", "instant"})


def date_values(v: Any, hint: str | None) -> list[tuple[int, int]]:
    if isinstance(v, str):
        r = date_range(v)
        if r is None:
            return []
        if hint in _INSTANT:
            # "An instant is considered a fixed point in time ... an interval with an effective width of
            # 0" (search.html#date), not the range of its written precision: one microsecond, the
            # finest the index holds, as resource.last_updated is searched (search_sql.instant_range)
            return [(r[0], r[0] + 1)]
        return [r]
    out: list[tuple[int, int]] = []
    if isinstance(v, dict):
        if "start" in v or "end" in v:  # Period
            s = date_range(v["start"]) if isinstance(v.get("start"), str) else None
            e = date_range(v["end"]) if isinstance(v.get("end"), str) else None
            out.append(((s[0] if s else MIN_TIME), (e[1] if e else MAX_TIME)))
        elif "event" in v or "repeat" in v:  # Timing: only the outer limits matter
            ranges = [r for r in (date_range(x) for x in v.get("event") or [] if isinstance(x, str)) if r]
            bounds = (v.get("repeat") or {}).get("boundsPeriod")
            if isinstance(bounds, dict):
                ranges.extend(date_values(bounds, "Period"))
            if ranges:
                out.append((min(r[0] for r in ranges), max(r[1] for r in ranges)))
    return out


def _range_ends(v: dict) -> tuple[Any, Any]:
    """A Range's low and high Quantities (None for an end without a number): its bounds."""
    return tuple(end if isinstance(end, dict) and _num(end.get("value")) is not None else None
                 for end in (v.get("low"), v.get("high")))  # type: ignore[return-value]


def _is_range(v: Any, hint: str | None) -> bool:
    return isinstance(v, dict) and (hint == "Range" or "low" in v or "high" in v)


def _bounds(low: Any, high: Any) -> tuple[float, float]:
    """[low, high] of a Range with these ends: both inclusive and exact ("assumed to have arbitrarily high
    precision", datatypes.html#Range); a missing end is unbounded (NUMBER_MIN / NUMBER_MAX)."""
    return (_num(low["value"]) if low else NUMBER_MIN,  # type: ignore[return-value]
            _num(high["value"]) if high else NUMBER_MAX)


def number_values(v: Any, hint: str | None) -> list[tuple[float, float]]:
    """[low, high] per value: a number is the range [n, n]; a Range (RiskAssessment.prediction.probability
    is decimal | Range) is one range, not its two ends."""
    if _is_range(v, hint):
        low, high = _range_ends(v)
        return [_bounds(low, high)] if low or high else []
    n = _num(v)
    if n is None and isinstance(v, dict):
        n = _num(v.get("value"))
    return [(n, n)] if n is not None else []


def _unit_keys(q: dict) -> list[tuple[str | None, str | None]]:
    """The (system, code) pairs a Quantity is found by: its coded unit, and its human unit spelled
    differently (`value-quantity=5.4||mg` finds `"unit": "mg"` without a code)."""
    code = q.get("code") or q.get("currency")
    keys = [(q.get("system"), code)]
    unit = q.get("unit")
    if isinstance(unit, str) and unit != code:
        keys.append((None, unit))
    return keys


def quantity_values(v: Any, hint: str | None) -> list[tuple[float, float, str | None, str | None]]:
    """(low, high, system, code) per value and unit: a Quantity is the range [n, n]; a Range (Condition
    onsetRange, useContext valueRange) is one range [low, high], found by the units of either end (R4:
    "the unit and code/system elements of the low or high elements SHALL match")."""
    if not isinstance(v, dict):
        n = _num(v)
        return [(n, n, None, None)] if n is not None else []
    if _is_range(v, hint):
        low, high = _range_ends(v)
        if not (low or high):
            return []
        lo, hi = _bounds(low, high)
        keys = _unit_keys(low) if low else []
        keys += [k for k in (_unit_keys(high) if high else []) if k not in keys]
        return [(lo, hi, s, c) for s, c in keys]
    n = _num(v.get("value"))
    if n is None:
        return []
    return [(n, n, s, c) for s, c in _unit_keys(v)]


def reference_values(v: Any, hint: str | None) -> list[tuple[str | None, str | None, str | None, str | None]]:
    """(target type, target id, version, url). Relative refs fill type/id; absolute and canonical refs fill url
    (and type/id too when they look like a RESTful FHIR URL, so the search layer can match own-base URLs)."""
    if isinstance(v, str):  # canonical / uri
        url, _, version = v.partition("|")
        return [(None, None, version or None, url)]
    if not isinstance(v, dict):
        return []
    ref = v.get("reference")
    if not isinstance(ref, str) or not ref:
        return []
    if ref.startswith(("urn:", "#")):  # a contained resource's is a value too (`subject:missing=false`)
        return [(None, None, None, ref)]
    parts = ref.split("/")
    version = None
    if len(parts) >= 4 and parts[-2] == "_history":
        version = parts[-1]
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        is_abs = "://" in ref
        return [(parts[-2], parts[-1], version, "/".join(parts) if is_abs else None)]
    return [(None, None, version, ref)]


def uri_values(v: Any, hint: str | None) -> list[str]:
    return [v] if isinstance(v, str) else []
