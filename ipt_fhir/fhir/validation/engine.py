"""The strict structural walker: JSON shape, primitives, cardinality, choices, bindings, invariants."""
from __future__ import annotations

import re
from typing import Any

from ..outcome import Issue, error, fhirpath_name, warning
from ..references import contained_resource, restful_parts
from .compiler import COMPLEX, RESOURCE, Node, Prop, type_node
from .definitions import known_resource_types
from .invariants import Invariant, InvariantUnevaluable
from .primitives import MEMO_ENTRIES, MEMO_MAX_LEN, MISS, json_kind
from .terminology import all_codes, expansion

_RELATIVE_REF = re.compile(r"([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?")
_ABSOLUTE_REF = re.compile(r"(https?|urn|ftp)://?\S+|urn:(uuid|oid):\S+", re.ASCII)
_CONDITIONAL_REF = re.compile(r"([A-Z][A-Za-z]+)\?\S*")
# references.html#literal: an absolute URL of this shape (the spec's regex, its type list as [A-Z][A-Za-z]+
# and checked against the known types) is a reference to a resource on a FHIR RESTful server, of the type
# its segment names; that holds whatever the server, this one or another. Other absolute URLs (documents,
# non-FHIR services) name no type and are not checked.
_ELE_1 = "All FHIR elements must have a @value or children (ele-1)"

# Invariant keys fhirpathpy failed on at runtime (reported as warnings, listed for the operators).
UNEVALUABLE: dict[str, str] = {}


class _Walk:
    __slots__ = ("issues", "conditional_references")

    def __init__(self, conditional_references: bool = False) -> None:
        self.issues: list[Issue] = []
        # Whether `Type?criteria` references are acceptable: only where the writer resolves them (Bundle
        # entries, imports); elsewhere they would be stored as they are, locating nothing.
        self.conditional_references = conditional_references

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
        contained = obj.get("contained")  # one lookup per resource: the check costs nothing without it
        if type(contained) is list and len(contained) > 1:
            self.contained_ids(contained, path)

    def contained_ids(self, contained: list, path: str) -> None:
        """Contained resources share their container's id space and `#id` names one of them
        (references.html#contained): two with one id make the reference ambiguous, so the second is
        refused. Ids of other JSON types are the id checker's."""
        seen: set[str] = set()
        for i, item in enumerate(contained):
            cid = item.get("id") if type(item) is dict else None
            if type(cid) is not str:
                continue
            if cid in seen:
                self.issues.append(error("value", f"Contained resources must have distinct ids: '{cid}' is "
                                                  "already the id of an earlier one", f"{path}.contained[{i}].id"))
            seen.add(cid)

    # -- objects --------------------------------------------------------------------------------------
    # The hot loop: every property of every object passes here, so it reads the flattened Prop copies
    # (compiler.Prop.flatten), checks scalar primitives inline, and builds a property's FHIRPath only
    # when something needs it (an issue, a child object, an extension, an invariant).
    def obj(self, obj: dict, node: Node, path: str, resource: dict, root: dict, prop_of: Prop | None = None) -> None:
        """Check an object of shape `node`; `prop_of`: the property it is the value of (for its element's
        own rules, checked after the object's, as in value())."""
        issues = self.issues
        if not obj:
            issues.append(error("structure", "Objects must not be empty", path))
            if prop_of is not None and prop_of.has_rules:
                self.element_rules(obj, prop_of, path, resource, root)
            return
        props = node.props
        only_id = True
        chosen: set | None = None  # choice elements seen, to report a second variant of one
        for key, value in obj.items():
            try:
                prop = props[key]  # cheaper than props.get() on this path; unknown keys are the exception
            except KeyError:
                prop = None
            if prop is None:
                if key == "resourceType" and node.is_resource:
                    continue
                if key[:1] == "_":
                    base = props.get(key[1:])
                    if base is not None and base.is_primitive:
                        if key[1:] not in obj:
                            self.lone_extension(value, base, path)
                            if base.choice:
                                chosen = self.choose(chosen, base.elem, obj, path)
                        elif value is None:  # json.html: null only inside arrays, keeping them aligned
                            issues.append(error("structure", f"'{key}' must not be null", f"{path}.{base.label}"))
                        only_id = False
                        continue
                issues.append(error("structure", f"Unknown element '{key}'",
                                    f"{path}.{fhirpath_name(key)}" if key else path))  # '': no name to add
                continue
            if key != "id":
                only_id = False
            if prop.choice:
                chosen = self.choose(chosen, prop.elem, obj, path)
            if prop.is_primitive:
                if prop.array:
                    self.primitive_array(obj, key, value, prop, path, resource, root)
                elif value is None or type(value) is list or type(value) is dict:
                    issues.append(error("structure", f"'{key}' must be a JSON primitive, found {json_kind(value)}",
                                        f"{path}.{prop.label}"))
                else:
                    memo = prop.memo
                    msg = memo.get(value, MISS) if memo is not None and type(value) is str else MISS
                    if msg is MISS:
                        msg = prop.check(value)
                    if msg is not None:
                        issues.append(error("value", msg, f"{path}.{prop.label}"))
                    elif prop.binding is not None:
                        self.code_binding(value, prop, f"{path}.{prop.label}")
                    ext = obj.get(prop.ext_key)
                    if ext is not None:
                        self.element_extension(ext, f"{path}.{prop.label}", True)
                    if prop.invariants:
                        self.invariants(prop.invariants, value, f"{path}.{prop.label}", resource, root)
                continue
            if prop.array:
                if type(value) is not list:
                    issues.append(error("structure", f"'{key}' must be a JSON array, found {json_kind(value)}",
                                        f"{path}.{prop.label}"))
                    continue
                if not value:
                    issues.append(error("structure", f"Arrays must not be empty ('{key}')", f"{path}.{prop.label}"))
                    continue
                if prop.max is not None and len(value) > prop.max:
                    issues.append(error("structure", f"'{key}' allows at most {prop.max} items, found {len(value)}",
                                        f"{path}.{prop.label}"))
                base = f"{path}.{prop.label}["
                if prop.kind == COMPLEX:
                    for i, item in enumerate(value):
                        if type(item) is dict:
                            self.obj(item, prop.node, f"{base}{i}]", resource, root, prop)  # type: ignore[arg-type]
                        else:
                            self.value(item, prop, f"{base}{i}]", resource, root)
                else:
                    for i, item in enumerate(value):
                        self.value(item, prop, f"{base}{i}]", resource, root)
            else:
                if type(value) is list:
                    issues.append(error("structure", f"'{key}' must not be an array (max cardinality 1)",
                                        f"{path}.{prop.label}"))
                elif type(value) is dict and prop.kind == COMPLEX:
                    self.obj(value, prop.node, f"{path}.{prop.label}", resource, root, prop)  # type: ignore[arg-type]
                else:
                    self.value(value, prop, f"{path}.{prop.label}", resource, root)
        # A primitive's `_name` object (node Element) holding only an id is valid beside a value:
        # element_extension decides ele-1 for it, knowing whether the value is there.
        if only_id and not node.is_resource and node.name != "Element":
            issues.append(error("invariant", _ELE_1, path))
        for elem in node.required:
            for k in elem.present_keys:
                if k in obj:
                    break
            else:
                issues.append(error("required", f"Missing required element '{elem.name}' (min cardinality {elem.min})",
                                    f"{path}.{elem.name}"))
        if node.walk_invariants:
            self.invariants(node.walk_invariants, obj, path, resource, root)
        if prop_of is not None and prop_of.has_rules:
            self.element_rules(obj, prop_of, path, resource, root)

    def choose(self, chosen: set | None, elem: Any, obj: dict, path: str) -> set:
        """Note a choice element as present; a second JSON property for the same one is an error."""
        if chosen is None:
            return {elem}
        if elem in chosen:
            keys = [k for k in elem.keys if k in obj or ("_" + k) in obj]
            self.issues.append(error("structure", f"Only one of {', '.join(keys)} is allowed ({elem.name}[x])",
                                     f"{path}.{elem.name}"))
        else:
            chosen.add(elem)
        return chosen

    def value(self, value: Any, prop: Prop, path: str, resource: dict, root: dict) -> None:
        """A value of a complex or resource-typed property (objects go straight to obj where they can)."""
        if prop.kind == RESOURCE:
            # contained resources resolve against their container; others stand alone
            self.resource(value, path, root if prop.elem.name == "contained" else None)
            return
        if type(value) is not dict:
            self.issues.append(error("structure", f"Expected a JSON object ({prop.type}), found {json_kind(value)}", path))
            return
        self.obj(value, prop.node, path, resource, root, prop)  # type: ignore[arg-type]

    def element_rules(self, value: dict, prop: Prop, path: str, resource: dict, root: dict) -> None:
        """What the element adds to its type's rules: its invariants, required binding, reference targets."""
        if prop.invariants:
            self.invariants(prop.invariants, value, path, resource, root)
        if prop.binding is not None:
            self.coded_binding(value, prop, path)
        if prop.reference:
            self.reference(value, prop, path, root)

    # -- primitives -----------------------------------------------------------------------------------
    def primitive_array(self, obj: dict, key: str, value: Any, prop: Prop, path: str, resource: dict,
                        root: dict) -> None:
        """A repeating primitive (scalar ones are checked inline in obj)."""
        issues = self.issues
        ext = obj.get(prop.ext_key)
        check = prop.check
        p = f"{path}.{prop.label}"
        if type(value) is not list:
            issues.append(error("structure", f"'{key}' must be a JSON array, found {json_kind(value)}", p))
            return
        if not value:
            issues.append(error("structure", f"Arrays must not be empty ('{key}')", p))
            return
        if prop.max is not None and len(value) > prop.max:
            issues.append(error("structure", f"'{key}' allows at most {prop.max} items, found {len(value)}", p))
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
                elif prop.binding is not None:
                    self.code_binding(v, prop, f"{p}[{i}]")
            if e is not None:
                self.element_extension(e, f"{p}[{i}]", v is not None)
        if prop.invariants:
            for i, v in enumerate(value):
                if v is not None:
                    self.invariants(prop.invariants, v, f"{p}[{i}]", resource, root)

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

    def reference(self, value: dict, prop: Prop, path: str, root: dict) -> None:
        ref = value.get("reference")
        if type(ref) is not str:
            return
        if ref.startswith("#"):
            self.local_reference(ref, value, prop, path, root)
            return
        rtype = _reference_types.get(ref, _UNSEEN)
        if rtype is _UNSEEN:
            rtype = _reference_type(ref)
        if rtype is _ABSOLUTE:
            return
        if rtype is not None:
            if not self.conditional_references and "?" in ref:
                self.issues.append(error("value", f"'{ref}' is a conditional reference, which only a transaction "
                                                  "resolves: reference the resource as Type/id", f"{path}.reference"))
                return
            problem = reference_type_problem(ref, rtype, prop.elem.targets, value.get("type"))
            if problem is not None:
                self.issues.append(error("value", problem, f"{path}.reference"))
            return
        self.issues.append(error("value", f"'{ref}' is not a valid reference (relative Type/id, absolute URL, "
                                          "urn:uuid/urn:oid, or #contained)", f"{path}.reference"))

    def local_reference(self, ref: str, value: dict, prop: Prop, path: str, root: dict) -> None:
        """`#id` names a resource contained in the container (`root`), `#` the container itself
        (references.html#contained); its type must be one the element allows. One that resolves to
        nothing is ref-1's to report."""
        target = root if ref == "#" else contained_resource(root, ref)
        rtype = target.get("resourceType") if type(target) is dict else None
        if type(rtype) is not str or rtype not in known_resource_types():  # reported where it stands
            return
        problem = reference_type_problem(ref, rtype, prop.elem.targets, value.get("type"))
        if problem is not None:
            self.issues.append(error("value", problem, f"{path}.reference"))

    # -- invariants -----------------------------------------------------------------------------------
    def invariants(self, invariants: list[Invariant], value: Any, path: str, resource: dict, root: dict) -> None:
        for inv in invariants:
            try:
                ok = inv.check(value, resource, root)  # type: ignore[misc]
            except InvariantUnevaluable as exc:
                UNEVALUABLE[inv.key] = exc.reason
                self.issues.append(warning("not-supported", f"Constraint {inv.key} could not be evaluated: {exc.reason}", path))
                continue
            if not ok:
                self.issues.append(error("invariant", f"Constraint failed: {inv.key}: {inv.human}", path))


_ABSOLUTE = "absolute"  # _reference_type's answer for an absolute URL or urn (compared by identity)
_reference_types: dict[str, str | None] = {}
_UNSEEN = object()


def _reference_type(ref: str) -> str | None:
    """The resource type a relative, conditional or RESTful absolute reference names, _ABSOLUTE (another
    absolute URL or urn), or None if malformed.

    Memoised (read by the caller): the same references (Patient/123, Practitioner/...) recur across a resource and a bundle,
    and the answer depends on the string alone. Bounded; emptied when full.
    """
    m = _RELATIVE_REF.fullmatch(ref) or _CONDITIONAL_REF.fullmatch(ref)
    if m is not None:
        answer: str | None = m.group(1)
    elif _ABSOLUTE_REF.fullmatch(ref):
        restful = restful_parts(ref)
        answer = restful[1] if restful is not None else _ABSOLUTE
    else:
        answer = None
    if len(ref) <= MEMO_MAX_LEN:  # bounded like the primitive checkers' memos
        if len(_reference_types) >= MEMO_ENTRIES:
            _reference_types.clear()
        _reference_types[ref] = answer
    return answer


_ELEMENT: list[Node] = []


_STRUCTURE_DEFINITION = "http://hl7.org/fhir/StructureDefinition/"


def reference_type_problem(ref: str, rtype: str | None, allowed: frozenset[str] | None,
                           declared: object) -> str | None:
    """Why a reference to a resource of type `rtype` may not stand in an element allowing `allowed` (None:
    any type), or None. `declared`: its Reference.type, which SHALL agree with the reference (R4
    Reference.type: "If both Reference.type and Reference.reference are populated and Reference.reference
    is a FHIR URL, both SHALL be consistent"; a resource type is named relative to StructureDefinition/)."""
    if rtype not in known_resource_types():
        return f"Reference '{ref}': unknown resource type {rtype}"
    if allowed is not None and rtype not in allowed:
        return f"Reference '{ref}': a {rtype} is not allowed here (allowed: {', '.join(sorted(allowed))})"
    if type(declared) is str and declared != rtype and declared != _STRUCTURE_DEFINITION + rtype:
        return f"Reference '{ref}' is to a {rtype}, but its type says '{declared}'"
    return None


def _element_node() -> Node:
    if not _ELEMENT:
        _ELEMENT.append(type_node("Element"))
    return _ELEMENT[0]


def validate_resource(resource: object, *, expected_type: str | None = None,
                      conditional_references: bool = False) -> list[Issue]:
    walk = _Walk(conditional_references)
    walk.resource(resource, "", None, expected_type)
    return walk.issues


class _EnvelopeWalk(_Walk):
    """A batch or transaction Bundle's own elements (entry, request, fullUrl…) without its entries'
    resources, which are validated one by one as their entries are processed. Structure, types,
    cardinality and bindings only; no invariant is evaluated: in FHIRPath the Bundle's cost more than
    the entries over thousands of them (bdl-7 compares every fullUrl with every other). Bundle
    processing checks those that apply to a batch or transaction in one pass of its own
    (bundle_processing.bundle_invariant_issues)."""

    __slots__ = ()

    def resource(self, obj: Any, path: str, root: dict | None, expected: str | None = None) -> None:
        if not path:
            super().resource(obj, path, root, expected)

    def invariants(self, invariants: Any, value: Any, path: str, resource: dict, root: dict) -> None:
        return


def validate_envelope(bundle: dict) -> list[Issue]:
    """The issues of a Bundle's own elements, its entries' resources left out (_EnvelopeWalk)."""
    walk = _EnvelopeWalk()
    walk.resource(bundle, "", None, "Bundle")
    return walk.issues
