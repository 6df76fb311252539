"""The FHIR types of the elements a search parameter's path reaches, read without any resource.

Search needs this for some decisions before it sees a resource (canonical_includes.names_by_url: only
`canonical`/`uri` elements name their target by its url). The path is compiled as the index extraction
compiles it (extract.compile_path: element steps, `as`/ofType, where(...) filters, indexers), and its
steps are followed through the R4 StructureDefinitions as the validator compiled them
(validation.compiler). Unresolved is raised for what that cannot follow (resolve(), extension(...),
`is`, an unknown element): callers then assume the most permissive answer.
"""
from __future__ import annotations

from ipt_fhir.fhir.validation.compiler import Node, type_node

from .extract import compile_path

_Positions = set[tuple[str, Node | None]]  # (FHIR type name, its compiled Node; None for primitives, Resource)
_ROOTS = frozenset({"Resource", "DomainResource"})


class Unresolved(Exception):
    """A path, or a step of it, that cannot be followed to element types."""


def reached_types(path: str, resource_type: str) -> set[str]:
    """The FHIR types of the elements `path` (one branch of a union) reaches from a `resource_type`."""
    compiled = compile_path(path.strip())
    if compiled is None or compiled[0] not in _ROOTS | {resource_type}:
        raise Unresolved(path)
    positions: _Positions = {(resource_type, type_node(resource_type))}
    for op in compiled[1]:
        if op[0] == "child":
            positions = _child(positions, op[1])
        elif op[0] == "as":
            positions = _narrow(positions, op[1])
        # "ref", "eq", "index" filter the values: the types stay
    return {t for t, _ in positions}


def _child(cur: _Positions, name: str) -> _Positions:
    out: _Positions = set()
    for _, node in cur:
        if node is None:
            raise Unresolved(name)  # below a primitive or a contained Resource
        for elem in node.elems:
            if elem.name == name:
                out.update((node.props[k].type, node.props[k].node) for k in elem.keys)
    if not out:
        raise Unresolved(name)
    return out


def _narrow(cur: _Positions, type_name: str) -> _Positions:
    """`as T` / ofType(T) (`type_name` lower-cased, as compile_path gives it): the positions of type T, a
    constrained type such as SimpleQuantity counting as its base type. Nothing left means a misreading."""
    out = {(t, node) for t, node in cur
           if type_name in (t.lower(), node.fp_base.lower() if node is not None and node.fp_base else None)}
    if not out:
        raise Unresolved(type_name)
    return out
