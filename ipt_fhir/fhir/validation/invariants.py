"""Error-severity invariants (constraint.expression) evaluated with fhirpathpy, compiled once each.

fhirpathpy 2.2 lacks three functions R4 constraints use; they are supplied here:
  hasValue()   - true for a single primitive with a value (used by ele-1 and a few others).
  htmlChecks() - the narrative rules, implemented by .xhtml (txt-1, txt-2 are checked natively on
                 every xhtml value, so the FHIRPath forms are not evaluated at all).
  resolve()    - contained references ('#id') resolve within %rootResource; relative references
                 'Type/id' resolve to a stub of that type, so `.ofType(Practitioner)` style tests
                 work; anything else resolves to nothing (the FHIRPath spec's answer for the unknown).
Hot, well-understood invariants are implemented natively (NATIVE below, keyed by the exact
expression text); ele-1 is checked structurally by the walker.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from fhirpathpy.engine import do_eval
from fhirpathpy.engine.invocations.constants import constants
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.engine.util import get_data
from fhirpathpy.models import models
from fhirpathpy.parser import parse

from ..references import contained_resource
from .xhtml import check_xhtml

MODEL = models["r4"]
_REF_TYPE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/.*)?$")


def _has_value(ctx: dict, inputs: list) -> list:
    if len(inputs) != 1:
        return [False]
    data = get_data(inputs[0])
    return [data is not None and not isinstance(data, (dict, list))]


def _html_checks(ctx: dict, inputs: list) -> list:
    for item in inputs:
        data = get_data(item)
        if isinstance(data, dict):
            data = data.get("div")
        if not isinstance(data, str) or check_xhtml(data) is not None:
            return [False]
    return [True]


def _resolve(ctx: dict, inputs: list) -> list:
    out = []
    root = ctx["vars"].get("rootResource") or {}
    for item in inputs:
        data = get_data(item)
        ref = data.get("reference") if isinstance(data, dict) else data
        if not isinstance(ref, str):
            continue
        if ref.startswith("#"):
            contained = root.get("contained") if isinstance(root, dict) else None
            for c in contained if isinstance(contained, list) else []:
                if isinstance(c, dict) and c.get("id") == ref[1:]:
                    out.append(ResourceNode.create_node(c))
            continue
        m = _REF_TYPE.match(ref)
        if m:
            out.append(ResourceNode.create_node({"resourceType": m.group(1)}))
    return out


USER_FUNCTIONS = {
    "hasValue": {"fn": _has_value},
    "htmlChecks": {"fn": _html_checks},
    "resolve": {"fn": _resolve},
}


def _ext_1(obj: dict, resource: dict, root: dict) -> bool:
    has_ext = bool(obj.get("extension"))
    has_value = any(k.startswith("value") for k in obj)
    return has_ext != has_value


def _ref_1(obj: dict, resource: dict, root: dict) -> bool:
    ref = obj.get("reference")
    if type(ref) is not str or not ref.startswith("#") or ref == "#":
        return True
    if type(root.get("contained", [])) is not list:
        return True  # a contained that is not a list is reported by the structure check
    return contained_resource(root, ref) is not None


def _instant(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _date_time_le(a: str, b: str) -> bool:
    """a <= b for FHIR dateTimes; an indeterminate comparison (mixed precision) counts as satisfied."""
    if "T" in a and "T" in b:
        da, db = _instant(a), _instant(b)
        if da is not None and db is not None and (da.tzinfo is None) == (db.tzinfo is None):
            return da <= db
        return True
    if "T" not in a and "T" not in b and len(a) == len(b):
        return a <= b
    n = min(len(a), len(b), 10)
    return a[:n] <= b[:n]


def _per_1(obj: dict, resource: dict, root: dict) -> bool:
    start, end = obj.get("start"), obj.get("end")
    if type(start) is not str or type(end) is not str:
        return True
    return _date_time_le(start, end)


def _rng_2(obj: dict, resource: dict, root: dict) -> bool:
    low, high = obj.get("low"), obj.get("high")
    if type(low) is not dict or type(high) is not dict:
        return True
    lv, hv = low.get("value"), high.get("value")
    if not isinstance(lv, (int, float)) or not isinstance(hv, (int, float)):
        return True
    if low.get("code", low.get("unit")) != high.get("code", high.get("unit")):
        return True  # different units: not comparable without UCUM conversion
    return lv <= hv


def _contained(obj: dict) -> list:
    c = obj.get("contained")
    return [r for r in c if type(r) is dict] if type(c) is list else []


def _dom_2(obj: dict, resource: dict, root: dict) -> bool:
    return not any(r.get("contained") for r in _contained(obj))


def _meta(r: dict) -> dict:
    m = r.get("meta")
    return m if type(m) is dict else {}


def _dom_4(obj: dict, resource: dict, root: dict) -> bool:
    return not any("versionId" in _meta(r) or "lastUpdated" in _meta(r) for r in _contained(obj))


def _dom_5(obj: dict, resource: dict, root: dict) -> bool:
    return not any("security" in _meta(r) for r in _contained(obj))


def _local_refs(value: Any, out: set[str]) -> None:
    if type(value) is dict:
        for v in value.values():
            _local_refs(v, out)
    elif type(value) is list:
        for v in value:
            _local_refs(v, out)
    elif type(value) is str and value.startswith("#"):
        out.add(value)


def _dom_3(obj: dict, resource: dict, root: dict) -> bool:
    contained = _contained(obj)
    if not contained:
        return True
    refs: set[str] = set()
    _local_refs(obj, refs)
    for r in contained:
        rid = r.get("id")
        if ("#" + str(rid)) in refs:
            continue
        back: set[str] = set()
        _local_refs(r, back)
        if "#" not in back:
            return False
    return True


def _obs_6(obj: dict, resource: dict, root: dict) -> bool:
    return "dataAbsentReason" not in obj or not any(k.startswith("value") for k in obj)


def _codings(cc: Any) -> list:
    if type(cc) is dict and type(cc.get("coding")) is list:
        return cc["coding"]
    return []


def _obs_7(obj: dict, resource: dict, root: dict) -> bool:
    if not any(k.startswith("value") for k in obj):
        return True
    own = _codings(obj.get("code"))
    comps = obj.get("component")
    for comp in comps if type(comps) is list else ():
        if type(comp) is dict and any(c in own for c in _codings(comp.get("code"))):
            return False
    return True


def _coded(cc: Any, system: str, codes: tuple[str, ...]) -> bool:
    return any(type(c) is dict and c.get("system") == system and c.get("code") in codes for c in _codings(cc))


_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
_AI_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"


def _con_4(obj: dict, resource: dict, root: dict) -> bool:
    if not any(k.startswith("abatement") for k in obj):
        return True
    return _coded(obj.get("clinicalStatus"), _CLINICAL, ("resolved", "remission", "inactive"))


def _con_5(obj: dict, resource: dict, root: dict) -> bool:
    return "clinicalStatus" not in obj or not _coded(obj.get("verificationStatus"), _VER, ("entered-in-error",))


def _ait_1(obj: dict, resource: dict, root: dict) -> bool:
    return "clinicalStatus" in obj or _coded(obj.get("verificationStatus"), _AI_VER, ("entered-in-error",))


def _ait_2(obj: dict, resource: dict, root: dict) -> bool:
    return "clinicalStatus" not in obj or not _coded(obj.get("verificationStatus"), _AI_VER, ("entered-in-error",))


def _not_home(obj: Any, resource: dict, root: dict) -> bool:
    return not (type(obj) is dict and obj.get("use") == "home")


def _ordered(earlier: str, later: str) -> Callable[[dict, dict, dict], bool]:
    def check(obj: dict, resource: dict, root: dict) -> bool:
        a, b = obj.get(earlier), obj.get(later)
        return type(a) is not str or type(b) is not str or _date_time_le(a, b)

    return check


def _always(obj: Any, resource: dict, root: dict) -> bool:
    return True


_DOM_3 = ("contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | "
          "%resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#')"
          ".exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')"
          ".exists()).not()).trace('unmatched', id).empty()")

# Natively implemented invariants: expression text -> predicate (True = satisfied). These are the hot
# ones on typical resources, plus those fhirpathpy gets wrong: per-1, mdd-1, Task inv-1 (it compares
# dateTimes ignoring the timezone), rng-2 (cannot compare Quantities without UCUM system), dom-3 (`as` on a collection).
NATIVE: dict[str, Callable[[dict, dict, dict], bool]] = {
    "extension.exists() != value.exists()": _ext_1,
    "htmlChecks()": _always,  # txt-1/txt-2: checked on the xhtml value itself
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))": _ref_1,
    "start.hasValue().not() or end.hasValue().not() or (start <= end)": _per_1,
    "low.empty() or high.empty() or (low <= high)": _rng_2,
    "contained.contained.empty()": _dom_2,
    _DOM_3: _dom_3,
    "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()": _dom_4,
    "contained.meta.security.empty()": _dom_5,
    "dataAbsentReason.empty() or value.empty()": _obs_6,
    "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()": _obs_7,
    "abatement.empty() or clinicalStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-clinical' "
    "and (code='resolved' or code='remission' or code='inactive')).exists()": _con_4,
    "verificationStatus.coding.where(system='http://terminology.hl7.org/CodeSystem/condition-ver-status' and "
    "code='entered-in-error').empty() or clinicalStatus.empty()": _con_5,
    "verificationStatus.coding.where(system = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification' "
    "and code = 'entered-in-error').exists() or clinicalStatus.exists()": _ait_1,
    "verificationStatus.coding.where(system = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-verification' "
    "and code = 'entered-in-error').empty() or clinicalStatus.empty()": _ait_2,
    "where(use = 'home').empty()": _not_home,  # org-2, org-3
    "(identifier.count() + name.count()) > 0": lambda obj, resource, root: "identifier" in obj or "name" in obj,
    # fhirpathpy compares dateTimes without their timezones; these two compare instants properly
    "whenHandedOver.empty() or whenPrepared.empty() or whenHandedOver >= whenPrepared": _ordered("whenPrepared", "whenHandedOver"),
    "lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn": _ordered("authoredOn", "lastModified"),
}

# For native predicates on an object: keys of which at least one must be present for the predicate to
# have anything to check; with none of them the predicate is true by its definition above (each one's
# first test), so it is not called. Only where that is plain from the code of the predicate.
NATIVE_NEEDS: dict[Callable[[dict, dict, dict], bool], tuple[str, ...]] = {
    _per_1: ("start", "end"),
    _rng_2: ("low", "high"),
    _dom_2: ("contained",),
    _dom_3: ("contained",),
    _dom_4: ("contained",),
    _dom_5: ("contained",),
    _obs_6: ("dataAbsentReason",),
    _con_5: ("clinicalStatus",),
    _ait_2: ("clinicalStatus",),
    _not_home: ("use",),
}

# Simple shapes compiled to key tests once the node's JSON keys are known (qty-3, cpt-2, cpl-3, ...),
# as predicates with the native signature (value, resource, root).
_SIMPLE = [
    (re.compile(r"(\w+)\.empty\(\) or (\w+)\.exists\(\)"), lambda a, b: lambda o, _r, _rt: not _any(o, a) or _any(o, b)),
    (re.compile(r"(\w+)\.empty\(\) or (\w+)\.empty\(\)"), lambda a, b: lambda o, _r, _rt: not _any(o, a) or not _any(o, b)),
    (re.compile(r"(\w+)\.exists\(\) implies (\w+)\.exists\(\)"), lambda a, b: lambda o, _r, _rt: not _any(o, a) or _any(o, b)),
    (re.compile(r"(\w+)\.exists\(\) or (\w+)\.exists\(\)"), lambda a, b: lambda o, _r, _rt: _any(o, a) or _any(o, b)),
    # tim-4, tim-5 and the like: "duration.exists() implies duration >= 0"
    (re.compile(r"(\w+)\.exists\(\) implies \1 >= 0"), lambda a: lambda o, _r, _rt: _non_negative(o, a)),
    (re.compile(r"(\w+)\.empty\(\)"), lambda a: lambda o, _r, _rt: not _any(o, a)),
    (re.compile(r"(\w+)\.exists\(\)"), lambda a: lambda o, _r, _rt: _any(o, a)),
]
# A leading `x.empty() or ...` / `x.exists() implies ...` makes the invariant hold whenever x is absent.
_GUARD = re.compile(r"^(\w+)(?:\.\w+)*\.(?:empty\(\) or |exists\(\) implies )")


def _non_negative(obj: Any, keys: tuple[str, ...]) -> bool:
    if type(obj) is not dict:
        return True
    for k in keys:
        v = obj.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            return False
    return True


def _any(obj: Any, keys: tuple[str, ...]) -> bool:
    if type(obj) is dict:
        for k in keys:  # a loop, not any(genexpr): this runs for most constraints on most objects
            if k in obj:
                return True
    return False


_KEYWORDS = frozenset(
    "and or xor implies not true false is as div mod in contains where select exists all empty".split()
)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r"(?<![\w.%$`])([A-Za-z_]\w*)(?!\w)(\s*\()?")


def root_names(expression: str) -> frozenset[str] | None:
    """Names of the context's children the expression can read, or None if it may read more.

    Used only to skip evaluation: when none of these children is present, the result is the same for
    every instance, so it is computed once per (node, invariant). Over-approximating is harmless;
    anything that reads the context as a whole ($this, %resource, children(), a leading function)
    returns None.
    """
    text = _STRING.sub("''", expression)
    if "%" in text or "$this" in text or "descendants" in text or "children" in text:
        return None
    names: set[str] = set()
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call:
            return None  # a function applied to the context itself
        if name in _KEYWORDS:
            continue
        names.add(name)
    return frozenset(names)


@dataclass(eq=False)
class Invariant:
    key: str
    human: str
    expression: str
    fp_base: str  # type or element path fhirpathpy resolves choice types against
    roots: frozenset[str] | None = None
    json_keys: tuple[str, ...] | None = None  # JSON keys of `roots`, bound by the compiler
    guard_keys: tuple[str, ...] | None = None
    native: Callable[[dict, dict, dict], bool] | None = None
    simple: Callable[[Any, dict, dict], bool] | None = None
    needs: tuple[str, ...] | None = None  # see NATIVE_NEEDS
    trivial: bool = False  # holds for every value (the walker skips it)
    # holds() as the cheapest plain function (obj, resource, root) -> bool, for the walker's hot loop
    check: Callable[[Any, dict, dict], bool] | None = field(default=None, repr=False)
    _parsed: Any = field(default=None, repr=False)
    _when_absent: bool | None = None

    def __post_init__(self) -> None:
        self.native = NATIVE.get(self.expression)
        if self.native is None:
            self.roots = root_names(self.expression)
        else:
            self.needs = NATIVE_NEEDS.get(self.native)
            self.trivial = self.native is _always
        self.check = self._fastest_check()

    def _fastest_check(self) -> Callable[[Any, dict, dict], bool]:
        """The check for this invariant's kind: native (guarded by the keys it needs), simple, or general."""
        native, needs, simple = self.native, self.needs, self.simple
        if native is not None and needs is None:
            return native
        if native is not None:
            def guarded(obj: Any, resource: dict, root: dict) -> bool:
                if type(obj) is dict:
                    for key in needs:  # type: ignore[union-attr]
                        if key in obj:
                            break
                    else:
                        return True
                return native(obj, resource, root)
            return guarded
        if simple is not None:
            return simple
        return self._general

    def bind(self, keys_of: Callable[[str], tuple[str, ...]]) -> None:
        """Resolve FHIRPath child names to JSON keys for the node this invariant runs on."""
        if self.native is not None or self.json_keys is not None:
            return
        self._bind(keys_of)
        self.check = self._fastest_check()

    def _bind(self, keys_of: Callable[[str], tuple[str, ...]]) -> None:
        if self.roots is not None:
            self.json_keys = tuple(k for r in sorted(self.roots) for k in keys_of(r))
        for rx, make in _SIMPLE:
            m = rx.fullmatch(self.expression)
            if m:
                self.simple = make(*(keys_of(g) for g in m.groups()))
                return
        g = _GUARD.match(self.expression)
        # `implies` and `xor` bind looser than `or`/the guard's own implies, which would void the shortcut
        rest = self.expression[g.end():] if g else ""
        if g and " implies " not in rest and " xor " not in rest:
            self.guard_keys = keys_of(g.group(1))

    def holds(self, obj: Any, resource: dict, root: dict) -> bool:
        return self.check(obj, resource, root)

    def _general(self, obj: Any, resource: dict, root: dict) -> bool:
        """An invariant with neither a native nor a simple check: FHIRPath, skipped where its guard or
        its keys say the answer is already known."""
        if self.guard_keys is not None and not _any(obj, self.guard_keys):
            return True
        keys = self.json_keys
        absent = keys is not None and type(obj) is dict and not any(k in obj for k in keys)
        if absent and self._when_absent is not None:
            return self._when_absent
        result = self._evaluate(obj, resource, root)
        if absent:
            self._when_absent = result
        return result

    def _evaluate(self, obj: Any, resource: dict, root_resource: dict) -> bool:
        if self._parsed is None:
            self._parsed = parse(self.expression)
        constants.reset()
        node = ResourceNode.create_node(obj, self.fp_base)
        ctx = {
            "dataRoot": [node],
            "vars": {"context": obj, "resource": resource, "rootResource": root_resource,
                     "ucum": "http://unitsofmeasure.org"},
            "model": MODEL,
            "userInvocationTable": USER_FUNCTIONS,
            "traceFn": _no_trace,
        }
        try:
            result = do_eval(ctx, [node], self._parsed["children"][0])
        except Exception as exc:  # a library gap must not turn a request into a 500
            raise InvariantUnevaluable(self.key, str(exc)) from exc
        if not result:
            return True  # empty: the invariant does not apply
        if len(result) == 1:
            value = get_data(result[0])
            if isinstance(value, bool):
                return value
        return True


def _no_trace(label: str, value: Any) -> None:
    return None


class InvariantUnevaluable(Exception):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.key = key
        self.reason = reason
