"""Compile StructureDefinitions once per type into trees keyed by JSON property name.

A Node is one object shape (a resource, a complex type, or an inline backbone element); each of its
Props is one JSON property (choice elements expand to valueString, valueQuantity, ...), already
resolved to the primitive checker or child Node it needs. Compilation is lazy and cached per type.
"""
from __future__ import annotations

import threading
from typing import Any

from .definitions import primitive_types, structures
from .invariants import Invariant
from .primitives import CHECKERS

PRIMITIVE, COMPLEX, RESOURCE = 0, 1, 2
# JSON property suffix for a type: constrained Quantity types keep their base type's name.
_SUFFIX = {"SimpleQuantity": "Quantity", "MoneyQuantity": "Quantity"}


class Elem:
    """One element definition within a Node (shared by all its choice variants)."""

    __slots__ = ("name", "path", "min", "max", "array", "binding", "invariants", "choice", "keys",
                 "targets", "types", "present_keys", "summary")

    def __init__(self, name: str, path: str, mn: int, mx: str, array: bool, binding: str | None,
                 invariants: list[Invariant], choice: bool, targets: frozenset[str] | None,
                 types: list[str]) -> None:
        self.name = name          # FHIRPath name: "value" for value[x]
        self.path = path          # definition path, e.g. Observation.component.value[x]
        self.min = mn
        self.max = None if mx == "*" else int(mx)
        self.array = array
        self.binding = binding
        self.invariants = invariants
        self.choice = choice
        self.keys: list[str] = []  # JSON property names that carry this element
        self.targets = targets    # Reference target resource types (None: any)
        self.types = types
        self.present_keys: tuple[str, ...] = ()  # JSON keys whose presence makes the element present
        self.summary = False      # isSummary: kept by _summary=true (services/search.py _summary_of)


class Prop:
    """One JSON property name of a Node."""

    __slots__ = ("elem", "type", "kind", "node", "check", "label", "reference",
                 # copies of what the walker reads for every value, set by flatten() once compiled
                 "is_primitive", "array", "max", "binding", "invariants", "choice", "ext_key", "memo",
                 "has_rules")

    def __init__(self, elem: Elem, type_name: str) -> None:
        self.elem = elem
        self.type = type_name
        self.kind = PRIMITIVE if type_name in primitive_types() else (RESOURCE if type_name == "Resource" else COMPLEX)
        self.node: Node | None = None
        self.check = CHECKERS.get(type_name)
        # FHIRPath step used in issue expressions
        self.label = f"{elem.name}.ofType({type_name})" if elem.choice else elem.name
        self.reference = type_name == "Reference"

    def flatten(self, key: str) -> None:
        """Copy the element's facts onto the prop (one attribute read instead of two in the walker)."""
        elem = self.elem
        self.is_primitive = self.kind == PRIMITIVE
        self.array = elem.array
        self.max = elem.max
        self.binding = elem.binding
        # constraints that hold by construction (txt-1/txt-2, checked on the xhtml value) never run
        self.invariants = [i for i in elem.invariants if not i.trivial]
        self.choice = elem.choice
        self.ext_key = "_" + key
        self.memo = getattr(self.check, "memo", None)  # verdicts on str values (primitives._memoised)
        self.has_rules = bool(self.invariants) or self.binding is not None or self.reference


class Node:
    __slots__ = ("name", "fp_base", "props", "elems", "required", "choices", "invariants", "is_resource",
                 "is_extension", "inline_invariants", "walk_invariants")

    def __init__(self, name: str, fp_base: str, is_resource: bool = False) -> None:
        self.name = name
        self.fp_base = fp_base
        self.props: dict[str, Prop] = {}
        self.elems: list[Elem] = []
        self.required: list[Elem] = []
        self.choices: list[Elem] = []
        self.invariants: list[Invariant] = []  # the type's own (root element) invariants
        self.walk_invariants: list[Invariant] = []  # those of them the walker runs (set by flatten)
        self.is_resource = is_resource
        self.is_extension = False

    def finish(self) -> None:
        self.required = [e for e in self.elems if e.min > 0]
        self.choices = [e for e in self.elems if e.choice]
        for inv in self.invariants:
            _bind_roots(inv, self)

    def flatten(self) -> None:
        """Once the node's props and invariants are final: walker-ready copies (see Prop.flatten)."""
        for key, prop in self.props.items():
            prop.flatten(key)
        for elem in self.elems:
            # `_key` counts as the element being there only for primitives (a lone primitive extension)
            elem.present_keys = tuple(elem.keys) + tuple(
                "_" + k for k in elem.keys if self.props[k].kind == PRIMITIVE)
        self.walk_invariants = [i for i in self.invariants if not i.trivial]


def _bind_roots(inv: Invariant, node: Node) -> None:
    def keys_of(name: str) -> tuple[str, ...]:
        for e in node.elems:
            if e.name == name:
                return tuple(e.keys) + tuple("_" + k for k in e.keys)
        return ()

    inv.bind(keys_of)


# Finished nodes, read without a lock. A type is compiled with the types it needs (recursively, and
# registered before its children so recursive types terminate) into `_pending` under one lock, and
# published only when the outermost compilation is done: no thread ever sees a half-built node.
_type_nodes: dict[str, Node] = {}
_pending: dict[str, Node] = {}
_compile_lock = threading.RLock()
_depth = 0


def type_node(name: str) -> Node:
    node = _type_nodes.get(name)
    if node is not None:
        return node
    global _depth
    with _compile_lock:
        node = _type_nodes.get(name) or _pending.get(name)
        if node is not None:
            return node
        t = structures()["types"].get(name)
        if t is None:
            raise KeyError(name)
        _depth += 1
        try:
            node = compile_type(name, t, _pending)
        except BaseException:
            if _depth == 1:
                _pending.clear()
            raise
        finally:
            _depth -= 1
        if _depth == 0:
            _type_nodes.update(_pending)
            _pending.clear()
        return node


def compile_type(name: str, t: dict, registry: dict[str, Node] | None) -> Node:
    elements = t["elements"]
    constraints = t["constraints"]
    root_path = elements[0]["p"]
    fp_base = t.get("constrains") or name
    root = Node(name, fp_base, is_resource=t["kind"] == "resource")
    root.is_extension = fp_base == "Extension"
    if registry is not None:
        registry[name] = root  # before children, so recursive types (Extension, Identifier) terminate
    root.invariants = _invariants(elements[0].get("c", ()), constraints, fp_base)
    nodes: dict[str, Node] = {root_path: root}
    has_children = {el["p"].rsplit(".", 1)[0] for el in elements[1:]}
    content_refs: list[tuple[Elem, list[Prop], str]] = []
    for el in elements[1:]:
        path = el["p"]
        parent_path, name_ = path.rsplit(".", 1)
        parent = nodes.get(parent_path)
        if parent is None:
            continue  # below a contentReference or a slice; not part of the base shape
        choice = name_.endswith("[x]")
        fp_name = name_[:-3] if choice else name_
        types = [tt[0] for tt in el.get("t", [])]
        if path == root_path + ".id" and root.is_resource:
            types = ["id"]  # Resource.id is an id, though the snapshot types it System.String
        targets = None
        for tt in el.get("t", []):
            if tt[0] == "Reference" and len(tt) > 1:
                names = frozenset(p.rsplit("/", 1)[-1] for p in tt[1])
                targets = None if "Resource" in names else names
        elem_fp_base = path[:-3] if choice else path
        elem = Elem(fp_name, path, el["mn"], el["mx"], el["mx"] != "1" and el["mx"] != "0",
                    el.get("b"), [], choice, targets, types)
        elem.summary = "s" in el
        parent.elems.append(elem)
        props: list[Prop] = []
        if choice:
            for tname in types:
                suffix = _SUFFIX.get(tname, tname)
                key = fp_name + suffix[0].upper() + suffix[1:]
                props.append(Prop(elem, tname))
                elem.keys.append(key)
        elif "cr" in el:
            props.append(Prop(elem, "BackboneElement"))
            elem.keys.append(fp_name)
            content_refs.append((elem, props, el["cr"]))
        else:
            props.append(Prop(elem, types[0] if types else "BackboneElement"))
            elem.keys.append(fp_name)
        inline = path in has_children and (not types or types[0] in ("BackboneElement", "Element"))
        if inline:
            child = Node(f"{name}:{path}", elem_fp_base)
            nodes[path] = child
            for p in props:
                p.kind = COMPLEX
                p.node = child
        elem_invs = _invariants(el.get("c", ()), constraints, elem_fp_base if inline else None)
        for key, p in zip(elem.keys, props):
            parent.props[key] = p
        elem.invariants = elem_invs
    for elem, props, target in content_refs:
        for p in props:
            p.kind = COMPLEX
            p.node = nodes[target]
    for n in nodes.values():
        n.finish()
    # Complex-typed props point at their type's compiled node, compiled on demand.
    for n in nodes.values():
        for p in n.props.values():
            if p.kind == COMPLEX and p.node is None:
                p.node = type_node(p.type)
        for e in n.elems:
            _specialise_elem_invariants(e, n)
    for n in nodes.values():
        n.flatten()
    return root


def _specialise_elem_invariants(elem: Elem, owner: Node) -> None:
    """Element-level invariants run on each value; drop those its type already runs, fix the fp base."""
    if not elem.invariants:
        return
    first = owner.props[elem.keys[0]]
    type_keys = {i.key for i in first.node.invariants} if first.node is not None else set()
    kept = []
    for inv in elem.invariants:
        if inv.key in type_keys:
            continue
        if inv.fp_base is None:  # evaluated on a value of the element's type
            inv.fp_base = first.node.fp_base if first.node is not None else first.type
        if first.node is not None:
            _bind_roots(inv, first.node)
        kept.append(inv)
    elem.invariants = kept


def _invariants(keys: Any, constraints: dict, fp_base: str | None) -> list[Invariant]:
    out = []
    for key in keys:
        if key == "ele-1":
            continue  # checked structurally: no empty objects, primitives need a value or extension
        human, expression = constraints[key]
        out.append(Invariant(key, human, expression, fp_base))  # type: ignore[arg-type]
    return out
