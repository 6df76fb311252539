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
from typing import Any, Callable

from fhirpathpy.engine import do_eval
from fhirpathpy.engine.invocations.constants import constants
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.engine.util import get_data
from fhirpathpy.models import models
from fhirpathpy.parser import parse

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
            for c in root.get("contained", []) if isinstance(root, dict) else []:
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


def _ext_1(obj: dict) -> bool:
    has_ext = bool(obj.get("extension"))
    has_value = any(k.startswith("value") for k in obj)
    return has_ext != has_value


# Natively implemented invariants: expression text -> predicate on the JSON object (True = satisfied).
NATIVE: dict[str, Callable[[dict], bool]] = {
    "extension.exists() != value.exists()": _ext_1,
    "htmlChecks()": lambda obj: True,  # txt-1/txt-2: checked on the xhtml value itself
}

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
    json_keys: tuple[str, ...] | None = None  # filled by the compiler from `roots`
    native: Callable[[dict], bool] | None = None
    _parsed: Any = field(default=None, repr=False)
    _when_absent: bool | None = None

    def __post_init__(self) -> None:
        self.native = NATIVE.get(self.expression)
        if self.native is None:
            self.roots = root_names(self.expression)

    def holds(self, obj: Any, resource: dict, root_resource: dict) -> bool:
        if self.native is not None:
            return self.native(obj)
        keys = self.json_keys
        absent = keys is not None and not any(k in obj for k in keys)
        if absent and self._when_absent is not None:
            return self._when_absent
        result = self._evaluate(obj, resource, root_resource)
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
