"""The FHIR types of the elements a search parameter's path reaches, read without any resource.

Search needs this for some decisions before it sees a resource (canonical_includes.names_by_url: only
`canonical`/`uri` elements name their target by its url). The path is compiled as the index extraction
compiles it (extract.compile_path: element steps, `as`/ofType, where(...) filters, indexers), and its
steps are followed through the R4 StructureDefinitions as the validator compiled them
(validation.compiler). Unresolved is raised for what that cannot follow (resolve(), extension(...),
`is`, an unknown element): callers then assume the most permissive answer.
"""
from __future__ import annotations

from functools import lru_cache

from ipt_fhir.fhir.validation.compiler import Node, type_node

from .extract import compile_path
from .registry import registry, split_union

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


# Element types whose values the reference index keeps as a bare url (extract.reference_values: a string
# value), so that only the target's `url` can resolve them: `canonical`, and `uri`, which R4 reference
# parameters reach too (ConceptMap source-uri / target-uri: ConceptMap.sourceUri / targetUri name a
# ValueSet by its url, as the canonical variants do; PlanDefinition definition: action.definitionUri).
# `Reference` values are never looked up by url.
URL_NAMED_TYPES = frozenset({"canonical", "uri"})


@lru_cache(maxsize=4096)  # some 500 R4 reference parameters; codes come from requests
def names_by_url(resource_type: str, code: str) -> bool:
    """Whether reference parameter `code` of `resource_type` may hold a value named by the target's url.

    Its index rows cannot tell: a canonical and a non-RESTful absolute Reference (`http://x/y`) are both
    kept as a url with no target id (extract.reference_values). But only a `canonical` (or, in R4, `uri`)
    element names its target by the target's `url`; a Reference-typed one never does (Device.url is a
    network address, not the device's name for a Reference). So the answer comes from the element types
    each union branch of the parameter's expression reaches (path_types.reached_types). A branch that
    cannot be followed (resolve(), extension(...), an unknown name) counts as possibly canonical, so this
    never makes an _include or _revinclude less complete than it was."""
    param = registry().get(resource_type, code)
    if param is None or param.type != "reference":
        return False
    if not param.expression:
        return True
    for branch in split_union(param.expression):
        try:
            types = reached_types(branch, resource_type)
        except (Unresolved, KeyError):
            return True
        if types & URL_NAMED_TYPES:
            return True
    return False
