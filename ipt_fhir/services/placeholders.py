"""The links of a transaction entry's resource, rewritten to what they stand for (http.html#transaction).

"Servers SHALL replace all matching links in the bundle, whether they are found in the resource ids,
resource references, elements of type uri, url, oid, uuid, and <a href="" & <img src="" in the
narrative." A link matches when its whole value is the fullUrl of an entry; the entry's resource id
needs nothing here (the server assigns it when it writes the entry).

Which strings are links is decided by their FHIR type, read from the validator's compiled
StructureDefinitions (`fhir/validation/compiler.py`), not by their look: an `Identifier.value` or a
`valueString` that spells a fullUrl is text and stays. Replaced are

- `Reference.reference`: every value goes to the caller's `resolve_reference` (fullUrls, conditional
  references such as `Patient?identifier=…`, unknown placeholders it refuses);
- elements of type uri, url, oid, uuid and canonical (a canonical is a uri): a value equal to a fullUrl
  of `LinkTargets` becomes the relative reference `Type/id`, as a reference would. The R4 text asks for
  it in oid and uuid elements too, though `Type/id` fits their patterns no better than any other
  relative reference. Which fullUrls count is the caller's choice: placeholders (`urn:uuid:…`,
  `urn:oid:…`) and absolute RESTful fullUrls (services/bundle_processing.py says which of those);
- in the narrative (`Narrative.div`), `href` and `src` attribute values equal to such a fullUrl, found
  by a scan of the markup; text and other attributes are never touched.

Values are replaced whole or not at all. The walk is copy-on-write: what it does not change is
returned as it is, and the parsed Bundle is never modified. An error of `resolve_reference` is raised
again with the FHIRPath of the reference (`Observation.contained[0].subject.reference`).
"""
from __future__ import annotations

import re
from typing import Callable, Mapping

from ipt_fhir.fhir.outcome import FHIRError, Issue, error
from ipt_fhir.fhir.validation import known_resource_types
from ipt_fhir.fhir.validation.compiler import COMPLEX, RESOURCE, Node, type_node
from ipt_fhir.fhir.validation.engine import reference_type_problem

_LINK_TYPES = frozenset({"uri", "url", "oid", "uuid", "canonical"})
_PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")

ResolveReference = Callable[[str], "str | None"]


def is_placeholder(full_url: str) -> bool:
    return full_url.startswith(_PLACEHOLDER_PREFIXES)


class LinkTargets:
    """The fullUrls that uri-typed values and narrative links are replaced for, each with its `Type/id`;
    built once per Bundle, read for every value of every entry."""

    __slots__ = ("by_full_url", "narrative_markers")

    def __init__(self, by_full_url: Mapping[str, str]) -> None:
        self.by_full_url = by_full_url
        # A narrative holding none of these substrings holds no link to replace, and is not scanned: the
        # common case of placeholders only keeps the single `"urn:" in div` test it always had.
        absolute = any(not is_placeholder(full_url) for full_url in by_full_url)
        self.narrative_markers = ("urn:", "://") if absolute else ("urn:",) if by_full_url else ()


NO_LINK_TARGETS = LinkTargets({})


def rewrite_links(resource: dict, resolve_reference: ResolveReference, links: LinkTargets) -> dict:
    """`resource` with its links replaced: uri-typed values and narrative links by `links`;
    `resolve_reference` answers a Reference.reference with its replacement, or None to keep it."""
    walk = _Walk(resolve_reference, links)
    try:
        return walk.resource(resource)
    except _LinkError as exc:
        raise exc.with_expression(str(resource.get("resourceType"))) from None


class _LinkError(Exception):
    """A reference that could not be resolved, and the FHIRPath steps to it, innermost first."""

    def __init__(self, error: FHIRError) -> None:
        super().__init__(error)
        self.error = error
        self.steps: list[str] = []

    def with_expression(self, root: str) -> FHIRError:
        path = root
        for step in reversed(self.steps):
            path += step if step.startswith("[") else f".{step}"
        issues = [Issue(i.severity, i.code, i.diagnostics, (path,)) for i in self.error.issues]
        return FHIRError(self.error.status, issues, self.error.headers)


# What the walk does with the values of a JSON property, decided once per compiled node: only the
# properties that can hold a link, or an object that can, are in its table.
_OBJECT, _RESOURCE, _LINK, _REFERENCE, _NARRATIVE, _REFERENCE_OBJECT = range(6)
# A _REFERENCE_OBJECT's child is (the Reference node, the target types its element allows or None).
_tables: dict[Node, dict[str, tuple[int, Node | tuple[Node, frozenset[str] | None] | None]]] = {}


def _table(node: Node) -> dict[str, tuple]:
    table = _tables.get(node)
    if table is None:
        table: dict[str, tuple] = {}
        for key, prop in node.props.items():
            if prop.kind == COMPLEX:
                # A Reference element: once rewritten, its target type is known and checked against the
                # types the element allows (validation saw only a placeholder).
                table[key] = ((_REFERENCE_OBJECT, (prop.node, prop.elem.targets)) if prop.type == "Reference"
                              else (_OBJECT, prop.node))
            elif prop.kind == RESOURCE:
                table[key] = (_RESOURCE, None)
            else:
                table["_" + key] = (_OBJECT, type_node("Element"))  # the primitive's id and extensions
                if prop.type in _LINK_TYPES:
                    table[key] = (_LINK, None)
                elif prop.elem.path == "Reference.reference":  # typed string in R4, not uri
                    table[key] = (_REFERENCE, None)
                elif prop.type == "xhtml":
                    table[key] = (_NARRATIVE, None)
        _tables[node] = table  # a race only builds the same table twice
    return table


class _Walk:
    """One resource's walk. Parsed JSON holds exact dicts, lists and strs, hence `type() is`."""

    __slots__ = ("resolve_reference", "targets", "narrative_markers", "own")

    def __init__(self, resolve_reference: ResolveReference, links: LinkTargets) -> None:
        self.resolve_reference = resolve_reference
        self.targets = links.by_full_url  # fullUrl -> Type/id, read inline in the hot loop below
        self.narrative_markers = links.narrative_markers
        self.own: frozenset[str] = frozenset()  # the fullUrls of the Bundles being walked (bundle())

    def resource(self, value: object) -> object:
        if type(value) is not dict or value.get("resourceType") not in known_resource_types():
            return value  # not an R4 resource: validation refused it before it got here
        if value["resourceType"] == "Bundle":
            return self.bundle(value)
        return self.object(value, type_node(value["resourceType"]))

    def bundle(self, value: dict) -> dict:
        """A Bundle that an entry stores (a document, a collection): its references to its own entries
        resolve inside it (bundle.html#references), so a value that is the fullUrl of one of its entries
        stays as written, even where the transaction has an entry of that fullUrl too. Links to the
        transaction's other entries are replaced as anywhere else."""
        entries = value.get("entry")
        own = frozenset(e["fullUrl"] for e in entries if type(e) is dict and type(e.get("fullUrl")) is str
                        ) if type(entries) is list else frozenset()
        if not own:
            return self.object(value, type_node("Bundle"))
        outer_own, outer_targets = self.own, self.targets
        self.own = outer_own | own
        if not own.isdisjoint(outer_targets):
            self.targets = {k: v for k, v in outer_targets.items() if k not in own}
        try:
            return self.object(value, type_node("Bundle"))
        finally:
            self.own, self.targets = outer_own, outer_targets

    def object(self, value: dict, node: Node) -> dict:
        out = None
        table = _tables.get(node) or _table(node)
        targets = self.targets
        for key, v in value.items():
            todo = table.get(key)
            if todo is None:
                continue
            action, child = todo
            if action == _LINK and type(v) is str:  # the common case, inline: Coding.system, Extension.url
                new = targets.get(v, v)
            else:
                try:
                    new = self.items(v, action, child) if type(v) is list else self.value(v, action, child)
                except _LinkError as exc:
                    exc.steps.append(node.props[key.lstrip("_")].label)
                    raise
            if new is not v:
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out

    def reference_object(self, value: dict, node: Node, allowed: frozenset[str] | None) -> dict:
        """A Reference, rewritten; a rewritten reference checked against the types its element allows."""
        new = self.object(value, node)
        if new is not value and new.get("reference") != value.get("reference"):
            _check_target(new, allowed)
        return new

    def items(self, values: list, action: int, child) -> list:  # noqa: ANN001 - a table entry's child
        out = None
        for i, item in enumerate(values):
            try:
                new = self.value(item, action, child)
            except _LinkError as exc:
                exc.steps.append(f"[{i}]")
                raise
            if new is not item:
                if out is None:
                    out = list(values)
                out[i] = new
        return values if out is None else out

    def value(self, value: object, action: int, child) -> object:  # noqa: ANN001 - a table entry's child
        if action == _OBJECT:
            return self.object(value, child) if type(value) is dict else value
        if action == _REFERENCE_OBJECT:
            return self.reference_object(value, *child) if type(value) is dict else value
        if action == _RESOURCE:
            return self.resource(value)
        if type(value) is not str:
            return value
        if action == _LINK:
            return self.targets.get(value, value)
        if action == _REFERENCE:
            if value in self.own:
                return value
            try:
                new = self.resolve_reference(value)
            except FHIRError as exc:
                raise _LinkError(exc) from None
            return value if new is None else new
        return narrative_links(value, self.targets, self.narrative_markers)


def _check_target(reference: dict, allowed: frozenset[str] | None) -> None:
    """A rewritten reference ("Type/id") must name a type its element allows, and agree with its `type`."""
    target = reference["reference"]
    rtype = target.split("/", 1)[0] if type(target) is str else None
    problem = reference_type_problem(target, rtype, allowed, reference.get("type"))
    if problem is not None:
        exc = _LinkError(FHIRError(400, [error("value", problem)]))
        exc.steps.append("reference")
        raise exc


# Markup of the narrative: comments and CDATA sections (skipped), then start tags with their attributes.
# Narrative is XML, so every "<" in text is escaped and a tag cannot start inside text; a ">" may stand
# in an attribute value, hence the quoted values are matched as wholes.
_MARKUP = re.compile(
    r"<!--.*?-->|<!\[CDATA\[.*?\]\]>"
    r"|<[A-Za-z][^\s/>]*(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*/?>",
    re.S)
# One attribute, name and quoted value as a whole: a value that spells ` href="…"` is not an attribute.
_ATTRIBUTE = re.compile(r"(\s+([^\s=/>]+)\s*=\s*)(?:\"([^\"]*)\"|'([^']*)')")


def narrative_links(div: str, targets: Mapping[str, str], markers: tuple[str, ...]) -> str:
    """`div` with every href or src attribute whose value is a key of `targets` replaced by its Type/id;
    `markers`: substrings one of which every key holds (LinkTargets.narrative_markers)."""
    for marker in markers:  # a loop, not any(): this runs for every narrative of a large transaction
        if marker in div:
            break
    else:
        return div

    def attribute(m: re.Match[str]) -> str:
        double_quoted = m.group(3) is not None
        target = targets.get(m.group(3) if double_quoted else m.group(4))
        if target is None or m.group(2) not in ("href", "src"):
            return m.group(0)
        quote = '"' if double_quoted else "'"
        return f"{m.group(1)}{quote}{target}{quote}"  # Type/id has neither quotes nor ampersands

    def markup(m: re.Match[str]) -> str:
        text = m.group(0)
        return text if text.startswith("<!") else _ATTRIBUTE.sub(attribute, text)

    return _MARKUP.sub(markup, div)
