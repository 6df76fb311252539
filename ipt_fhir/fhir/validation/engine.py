"""The strict structural walker: JSON shape, primitives, cardinality, choices, bindings, invariants."""
from __future__ import annotations

import re
from typing import Any

from ..outcome import Issue, error, warning
from .compiler import COMPLEX, PRIMITIVE, RESOURCE, Node, Prop, type_node
from .definitions import known_resource_types
from .invariants import Invariant, InvariantUnevaluable
from .primitives import json_kind
from .terminology import all_codes, expansion

_RELATIVE_REF = re.compile(r"([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_ABSOLUTE_REF = re.compile(r"(https?|urn|ftp)://?\S+|urn:(uuid|oid):\S+", re.ASCII)
_CONDITIONAL_REF = re.compile(r"([A-Z][A-Za-z]+)\?\S*")
_ELE_1 = "All FHIR elements must have a @value or children (ele-1)"

# Invariant keys fhirpathpy failed on at runtime (reported as warnings, listed for the operators).
UNEVALUABLE: dict[str, str] = {}


class _Walk:
    __slots__ = ("issues",)

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    # -- resources ----------------------------------------------------------------------------------
    def resource(self, obj: Any, path: str, root: dict | None, expected: str | None = None) -> None:
        if type(obj) is not dict:
            self.issues.append(error("structure", f"A resource must be a JSON object, found {json_kind(obj)}", path))
            return
        rt = obj.get("resourceType")
        if rt is None:
            self.issues.append(error("structure", "The resource has no resourceType", path or expected or ""))
            return
        if type(rt) is not str or rt not in known_resource_types():
            self.issues.append(error("structure", f"Unknown resourceType '{rt}'", path or str(rt)))
            return
        if expected is not None and rt != expected:
            self.issues.append(error("invalid", f"Expected a {expected} resource, found {rt}", expected))
            return
        if not path:
            path = rt
        self.obj(obj, type_node(rt), path, obj, root if root is not None else obj)

    # -- objects --------------------------------------------------------------------------------------
    def obj(self, obj: dict, node: Node, path: str, resource: dict, root: dict) -> None:
        issues = self.issues
        if not obj:
            issues.append(error("structure", "Objects must not be empty", path))
            return
        props = node.props
        only_id = True
        present: set = set()
        for key, value in obj.items():
            prop = props.get(key)
            if prop is None:
                if key == "resourceType" and node.is_resource:
                    continue
                if key[:1] == "_":
                    base = props.get(key[1:])
                    if base is not None and base.kind == PRIMITIVE:
                        if key[1:] not in obj:
                            self.lone_extension(value, base, path)
                            self.mark(base.elem, present, obj, path)
                        only_id = False
                        continue
                issues.append(error("structure", f"Unknown element '{key}'", f"{path}.{key}"))
                continue
            if key != "id":
                only_id = False
            elem = prop.elem
            self.mark(elem, present, obj, path)
            if prop.kind == PRIMITIVE:
                self.primitive(obj, key, value, prop, path, resource, root)
                continue
            if elem.array:
                if type(value) is not list:
                    issues.append(error("structure", f"'{key}' must be a JSON array, found {json_kind(value)}",
                                        f"{path}.{prop.label}"))
                    continue
                if not value:
                    issues.append(error("structure", f"Arrays must not be empty ('{key}')", f"{path}.{prop.label}"))
                    continue
                if elem.max is not None and len(value) > elem.max:
                    issues.append(error("structure", f"'{key}' allows at most {elem.max} items, found {len(value)}",
                                        f"{path}.{prop.label}"))
                base = f"{path}.{prop.label}["
                for i, item in enumerate(value):
                    self.value(item, prop, f"{base}{i}]", resource, root)
            else:
                if type(value) is list:
                    issues.append(error("structure", f"'{key}' must not be an array (max cardinality 1)",
                                        f"{path}.{prop.label}"))
                    continue
                self.value(value, prop, f"{path}.{prop.label}", resource, root)
        if only_id and not node.is_resource:
            issues.append(error("invariant", _ELE_1, path))
        for elem in node.required:
            if elem not in present:
                issues.append(error("required", f"Missing required element '{elem.name}' (min cardinality {elem.min})",
                                    f"{path}.{elem.name}"))
        if node.invariants:
            self.invariants(node.invariants, obj, path, resource, root)

    def mark(self, elem: Any, present: set, obj: dict, path: str) -> None:
        if elem in present and elem.choice:
            keys = [k for k in elem.keys if k in obj or ("_" + k) in obj]
            self.issues.append(error("structure", f"Only one of {', '.join(keys)} is allowed ({elem.name}[x])",
                                     f"{path}.{elem.name}"))
        present.add(elem)

    def value(self, value: Any, prop: Prop, path: str, resource: dict, root: dict) -> None:
        if prop.kind == RESOURCE:
            # contained resources resolve against their container; others stand alone
            self.resource(value, path, root if prop.elem.name == "contained" else None)
            return
        if type(value) is not dict:
            self.issues.append(error("structure", f"Expected a JSON object ({prop.type}), found {json_kind(value)}", path))
            return
        self.obj(value, prop.node, path, resource, root)  # type: ignore[arg-type]
        elem = prop.elem
        if elem.invariants:
            self.invariants(elem.invariants, value, path, resource, root)
        if elem.binding is not None:
            self.coded_binding(value, prop, path)
        if prop.reference:
            self.reference(value, prop, path)

    # -- primitives -----------------------------------------------------------------------------------
    def primitive(self, obj: dict, key: str, value: Any, prop: Prop, path: str, resource: dict, root: dict) -> None:
        issues = self.issues
        elem = prop.elem
        ext = obj.get("_" + key) if ("_" + key) in obj else None
        check = prop.check
        if not elem.array:
            if value is None or type(value) in (list, dict):
                issues.append(error("structure", f"'{key}' must be a JSON primitive, found {json_kind(value)}",
                                    f"{path}.{prop.label}"))
                return
            msg = check(value)
            if msg is not None:
                issues.append(error("value", msg, f"{path}.{prop.label}"))
            elif elem.binding is not None:
                self.code_binding(value, prop, f"{path}.{prop.label}")
            if ext is not None:
                self.element_extension(ext, f"{path}.{prop.label}", True)
            if elem.invariants:
                self.invariants(elem.invariants, value, f"{path}.{prop.label}", resource, root)
            return
        p = f"{path}.{prop.label}"
        if elem.array:
            if type(value) is not list:
                issues.append(error("structure", f"'{key}' must be a JSON array, found {json_kind(value)}", p))
                return
            if not value:
                issues.append(error("structure", f"Arrays must not be empty ('{key}')", p))
                return
            if elem.max is not None and len(value) > elem.max:
                issues.append(error("structure", f"'{key}' allows at most {elem.max} items, found {len(value)}", p))
            if ext is not None and (type(ext) is not list or len(ext) != len(value)):
                issues.append(error("structure", f"'_{key}' must be an array aligned with '{key}' (same length)", p))
                ext = None
            for i, v in enumerate(value):
                e = ext[i] if ext is not None else None
                if v is None:
                    if e is None:
                        issues.append(error("structure", f"null in '{key}' is only allowed where '_{key}' has a value",
                                            f"{p}[{i}]"))
                else:
                    msg = check(v)
                    if msg is not None:
                        issues.append(error("value", msg, f"{p}[{i}]"))
                    elif elem.binding is not None:
                        self.code_binding(v, prop, f"{p}[{i}]")
                if e is not None:
                    self.element_extension(e, f"{p}[{i}]", v is not None)
            if elem.invariants:
                for i, v in enumerate(value):
                    if v is not None:
                        self.invariants(elem.invariants, v, f"{p}[{i}]", resource, root)

    def lone_extension(self, ext: Any, prop: Prop, path: str) -> None:
        """`_key` without `key`: the primitive has extensions but no value."""
        p = f"{path}.{prop.label}"
        if prop.elem.array:
            if type(ext) is not list or not ext:
                self.issues.append(error("structure", f"'_{prop.elem.keys[0]}' must be a non-empty JSON array", p))
                return
            for i, e in enumerate(ext):
                if e is None:
                    self.issues.append(error("structure", "null with neither value nor extension", f"{p}[{i}]"))
                else:
                    self.element_extension(e, f"{p}[{i}]", False)
        else:
            self.element_extension(ext, p, False)

    def element_extension(self, ext: Any, path: str, has_value: bool) -> None:
        if type(ext) is not dict:
            self.issues.append(error("structure", f"Primitive extension must be a JSON object, found {json_kind(ext)}", path))
            return
        self.obj(ext, _element_node(), path, {}, {}) if ext else self.issues.append(
            error("structure", "Objects must not be empty", path))
        if not has_value and not ext.get("extension"):
            self.issues.append(error("invariant", _ELE_1, path))

    # -- terminology and references -------------------------------------------------------------------
    def code_binding(self, code: Any, prop: Prop, path: str) -> None:
        codes = all_codes(prop.elem.binding)  # type: ignore[arg-type]
        if codes is not None and code not in codes:
            self.issues.append(error("code-invalid", f"'{code}' is not in the required value set {prop.elem.binding}", path))

    def coded_binding(self, value: dict, prop: Prop, path: str) -> None:
        url = prop.elem.binding
        if prop.type == "CodeableConcept":
            codings = value.get("coding")
        elif prop.type == "Coding":
            codings = [value]
        else:
            return
        exp = expansion(url)  # type: ignore[arg-type]
        if exp is None:
            return
        if type(codings) is not list:
            codings = []
        for c in codings:
            if type(c) is not dict:
                continue
            system, code = c.get("system"), c.get("code")  # wrong JSON types are reported elsewhere
            if type(code) is str and (system is None or type(system) is str) and code in exp.get(system, ()):
                return
        shown = ", ".join(f"{c.get('system')}#{c.get('code')}" for c in codings if type(c) is dict) or "no coding"
        self.issues.append(error("code-invalid", f"{shown}: none is in the required value set {url}", path))

    def reference(self, value: dict, prop: Prop, path: str) -> None:
        ref = value.get("reference")
        if type(ref) is not str:
            return
        if ref.startswith("#"):
            return  # ref-1 checks it resolves
        m = _RELATIVE_REF.fullmatch(ref) or _CONDITIONAL_REF.fullmatch(ref)
        if m is not None:
            rtype = m.group(1)
            if rtype not in known_resource_types():
                self.issues.append(error("value", f"Reference '{ref}': unknown resource type {rtype}", f"{path}.reference"))
            elif prop.elem.targets is not None and rtype not in prop.elem.targets:
                self.issues.append(error(
                    "value", f"Reference '{ref}': a {rtype} is not allowed here (allowed: "
                    f"{', '.join(sorted(prop.elem.targets))})", f"{path}.reference"))
            return
        if _ABSOLUTE_REF.fullmatch(ref):
            return
        self.issues.append(error("value", f"'{ref}' is not a valid reference (relative Type/id, absolute URL, "
                                          "urn:uuid/urn:oid, or #contained)", f"{path}.reference"))

    # -- invariants -----------------------------------------------------------------------------------
    def invariants(self, invariants: list[Invariant], value: Any, path: str, resource: dict, root: dict) -> None:
        for inv in invariants:
            try:
                ok = inv.holds(value, resource, root)
            except InvariantUnevaluable as exc:
                UNEVALUABLE[inv.key] = exc.reason
                self.issues.append(warning("not-supported", f"Constraint {inv.key} could not be evaluated: {exc.reason}", path))
                continue
            if not ok:
                self.issues.append(error("invariant", f"Constraint failed: {inv.key}: {inv.human}", path))


_ELEMENT: list[Node] = []


def _element_node() -> Node:
    if not _ELEMENT:
        _ELEMENT.append(type_node("Element"))
    return _ELEMENT[0]


def validate_resource(resource: object, *, expected_type: str | None = None) -> list[Issue]:
    walk = _Walk()
    walk.resource(resource, "", None, expected_type)
    return walk.issues
