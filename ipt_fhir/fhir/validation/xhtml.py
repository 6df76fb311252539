"""Narrative XHTML rules (http://hl7.org/fhir/R4/narrative.html#xhtml), i.e. txt-1 and txt-2.

The div must be well-formed XHTML, rooted at <div xmlns="http://www.w3.org/1999/xhtml">, using only the
basic HTML formatting elements; no scripts, forms, frames, objects, styles sheets, event attributes
(on*), and no external references except images (img/@src) and hyperlinks (a/@href).
"""
from __future__ import annotations

import html.entities
import re
from xml.parsers import expat

ALLOWED_ELEMENTS = frozenset(
    "p br div h1 h2 h3 h4 h5 h6 a span b em i strong small big tt dfn q var abbr acronym cite blockquote "
    "hr address bdo kbd sub sup ul ol li dl dt dd pre table caption colgroup col thead tr tfoot tbody th "
    "td code samp img map area u s strike font center".split()
)
ALLOWED_ATTRIBUTES = frozenset(
    "title style class id lang dir accesskey tabindex href name src alt longdesc height width border "
    "hspace vspace align valign summary frame rules cellspacing cellpadding colspan rowspan char charoff "
    "abbr axis headers scope span nowrap start type compact value shape coords usemap ismap cite datetime "
    "size color face clear noshade bgcolor rev rel charset hreflang xmlns".split()
)
_ENTITY = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})


def _numeric_entities(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name in _XML_ENTITIES:
            return m.group(0)
        cp = html.entities.name2codepoint.get(name)
        return f"&#{cp};" if cp is not None else m.group(0)

    return _ENTITY.sub(repl, text) if "&" in text else text


# expat names a namespaced element or attribute 'namespace}local' (the separator ElementTree uses too, so
# that a namespace holding a space or a '}' fares as it did there); the messages use {namespace}local.
XHTML = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"


def check_xhtml(text: str) -> str | None:
    """None when `text` is a valid narrative div, else the first problem. One expat pass with handlers
    (no element tree, which cost 1.6 times as much on every write); the first rule broken is kept and
    reported only once the whole text parsed, so a malformed div is reported as malformed first."""
    problems: list[str] = []
    content = [False]  # non-whitespace text or an <img> seen
    elements = [0]  # start tags seen: the first is the root

    def start(tag: str, attrs: dict[str, str]) -> None:
        elements[0] += 1
        if problems:
            return
        ns, _, local = tag.rpartition("}")
        if elements[0] == 1 and tag != XHTML + "}div":
            problems.append("Narrative root must be a <div> in the XHTML namespace (http://www.w3.org/1999/xhtml)")
        elif ns != XHTML:
            problems.append(f"Narrative element {_clark(tag)} is not in the XHTML namespace")
        elif local not in ALLOWED_ELEMENTS:
            problems.append(f"Narrative element <{local}> is not allowed (txt-1)")
        else:
            if local == "img":
                content[0] = True
            for attr, value in attrs.items():
                problem = _attribute_problem(local, attr, value)
                if problem is not None:
                    problems.append(problem)
                    return

    def data(chunk: str) -> None:
        if not content[0] and chunk.strip():
            content[0] = True

    parser = expat.ParserCreate(namespace_separator="}")
    # Before anything of the document type is read: no DTD is allowed at all, so no entity can be declared
    # for later references to expand (entity expansion, external entities: XXE), and expat refuses any
    # reference to an undeclared one itself ("undefined entity").
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.StartElementHandler = start
    parser.CharacterDataHandler = data
    parser.buffer_text = True
    try:
        parser.Parse(_numeric_entities(text), True)
    except expat.ExpatError as exc:
        return f"Narrative is not well-formed XHTML: {exc}"
    except _Refused as exc:
        return str(exc)
    if problems:
        return problems[0]
    if not content[0]:
        return "Narrative must have some non-whitespace content (txt-2)"
    return None


class _Refused(Exception):
    """Stops the parse at once (raised from a handler, expat goes no further)."""


def _refuse_doctype(name: str, *_ids_and_subset: object) -> None:
    # narrative.html: the div is an XHTML fragment, a <div> element with its content; a document type
    # declaration has no place in it, and its internal subset may declare entities (XXE, expansion).
    raise _Refused(f"Narrative must not contain a DOCTYPE declaration (<!DOCTYPE {name} ...>)")


def _clark(name: str) -> str:
    """expat's 'namespace}local' as {namespace}local, the notation the messages use."""
    return "{" + name if "}" in name else name


def _attribute_problem(local: str, attr: str, value: str) -> str | None:
    if "}" in attr:  # namespaced: only xml:lang and xml:space
        if attr in (XML_NS + "}lang", XML_NS + "}space"):
            return None
        return f"Narrative attribute '{_clark(attr)}' on <{local}> is not allowed (txt-1)"
    if attr not in ALLOWED_ATTRIBUTES:
        return f"Narrative attribute '{attr}' on <{local}> is not allowed (txt-1)"
    if attr == "src" and local != "img":
        return f"Narrative <{local}> may not reference external content (txt-1)"
    if attr in ("href", "src") and value.strip().lower().startswith(("javascript:", "vbscript:")):
        return f"Narrative <{local}> {attr} must not be a script (txt-1)"
    return None
