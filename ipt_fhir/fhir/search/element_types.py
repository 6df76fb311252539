"""The FHIR types of the elements a search parameter's FHIRPath path reaches, read statically.

Search needs to know, for some decisions, what kind of element a parameter's expression points at
before any resource is seen (canonical_includes.names_by_url: only `canonical`/`uri` elements name
their target by its url). Search parameter expressions are simple paths: element names, `where(...)`
and other filters, `as T` / `.as(T)` / `.ofType(T)`, indexers, parentheses and unions. This follows
them through the R4 StructureDefinitions as the validator compiled them (validation.compiler), and
raises Unresolved for anything else (resolve(), extension(...), `is`, an unknown name): callers then
assume the most permissive answer.
"""
from __future__ import annotations

import re

from ipt_fhir.fhir.validation.compiler import Node, type_node

# FHIRPath functions that only filter a collection: the types reached stay those of their input.
_FILTERS = frozenset({"where", "first", "last", "tail", "single", "distinct", "skip", "take"})
_TOKEN = re.compile(r"\s*(?:'(?:[^'\\]|\\.)*'|`[^`]*`|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?|!=|!~|<=|>=|\S)")


class Unresolved(Exception):
    """A step the resolver does not follow (resolve(), extension(...), is, an unknown name)."""


_Positions = set[tuple[str, Node | None]]  # (FHIR type name, its compiled Node; None for primitives, Resource)


def reached_types(expression: str, resource_type: str) -> set[str]:
    """The FHIR types of the elements a simple FHIRPath path reaches from a `resource_type` resource."""
    tokens = [t.strip() for t in _TOKEN.findall(expression)]  # `\S` takes any character left over
    root: _Positions = {(resource_type, type_node(resource_type))}
    positions, end = _Path(tokens, resource_type, root).union(0)
    if end != len(tokens):
        raise Unresolved(expression)
    return {t for t, _ in positions}


class _Path:
    """Recursive descent over the tokens of a path expression, evaluating element types (not values)."""

    def __init__(self, tokens: list[str], resource_type: str, root: _Positions) -> None:
        self.tokens, self.resource_type, self.root = tokens, resource_type, root

    def at(self, i: int) -> str:
        return self.tokens[i] if i < len(self.tokens) else ""

    def union(self, i: int) -> tuple[_Positions, int]:
        out, i = self.term(i)
        while self.at(i) == "|":
            more, i = self.term(i + 1)
            out |= more
        return out, i

    def term(self, i: int) -> tuple[_Positions, int]:
        tok = self.at(i)
        if tok == "(":
            cur, i = self.union(i + 1)
            if self.at(i) != ")":
                raise Unresolved(tok)
            i += 1
        elif _is_name(tok) and tok in (self.resource_type, "Resource", "DomainResource") and self.at(i + 1) != "(":
            cur, i = set(self.root), i + 1  # the leading type name
        else:
            cur, i = self.step(self.root, i)
        while True:
            tok = self.at(i)
            if tok == ".":
                cur, i = self.step(cur, i + 1)
            elif tok == "[":
                i = self.closing(i, "[", "]")  # an indexer keeps the type
            elif tok == "as":
                type_name, i = self.type_name(i + 1)
                cur = _narrow(cur, type_name)
            else:
                return cur, i

    def step(self, cur: _Positions, i: int) -> tuple[_Positions, int]:
        """One `name` (an element) or `name(...)` (a function) applied to `cur`."""
        name = self.at(i)
        if not _is_name(name) or name == "is":
            raise Unresolved(name)
        if self.at(i + 1) != "(":
            if name == "as":
                raise Unresolved(name)
            return _child(cur, name.strip("`")), i + 1
        end = self.closing(i + 1, "(", ")")
        if name in _FILTERS:
            return cur, end
        if name in ("as", "ofType"):
            type_name, j = self.type_name(i + 2)
            if j != end - 1:
                raise Unresolved(name)
            return _narrow(cur, type_name), end
        raise Unresolved(name)  # resolve(), extension(...), exists(), ...

    def type_name(self, i: int) -> tuple[str, int]:
        name = self.at(i)
        if name == "FHIR" and self.at(i + 1) == ".":
            i, name = i + 2, self.at(i + 2)
        if not _is_name(name):
            raise Unresolved(name)
        return name.strip("`"), i + 1

    def closing(self, i: int, open_: str, close: str) -> int:
        """The index after the bracket matching the one at `i` (its contents are not evaluated)."""
        depth = 0
        for j in range(i, len(self.tokens)):
            if self.tokens[j] in ("(", "["):
                depth += 1
            elif self.tokens[j] in (")", "]"):
                depth -= 1
                if depth == 0:
                    if self.tokens[j] != close:
                        break
                    return j + 1
        raise Unresolved(open_)


def _is_name(tok: str) -> bool:
    return bool(tok) and (tok[0].isalpha() or tok[0] in "_`")


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
    """`as T` / ofType(T): the positions of type T (a constrained type such as SimpleQuantity counts as
    its base type). Narrowing to nothing means we misread something, so that is unresolved too."""
    out = {(t, node) for t, node in cur if type_name in (t, node.fp_base if node is not None else None)}
    if not out:
        raise Unresolved(type_name)
    return out
