"""Narrative XHTML rules (http://hl7.org/fhir/R4/narrative.html#xhtml), i.e. txt-1 and txt-2.

The div must be well-formed XHTML, rooted at <div xmlns="http://www.w3.org/1999/xhtml">, using only the
basic HTML formatting elements; no scripts, forms, frames, objects, styles sheets, event attributes
(on*), and no external references except images (img/@src) and hyperlinks (a/@href).
"""
from __future__ import annotations

import html.entities
import re
import xml.etree.ElementTree as ET

XHTML_NS = "{http://www.w3.org/1999/xhtml}"

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
XML_ATTRIBUTES = frozenset({"{http://www.w3.org/XML/1998/namespace}lang", "{http://www.w3.org/XML/1998/namespace}space"})
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


def check_xhtml(text: str) -> str | None:
    try:
        root = ET.fromstring(_numeric_entities(text))
    except ET.ParseError as exc:
        return f"Narrative is not well-formed XHTML: {exc}"
    if root.tag != XHTML_NS + "div":
        return "Narrative root must be a <div> in the XHTML namespace (http://www.w3.org/1999/xhtml)"
    for el in root.iter():
        tag = el.tag
        if not isinstance(tag, str) or not tag.startswith(XHTML_NS):
            return f"Narrative element {tag} is not in the XHTML namespace"
        local = tag[len(XHTML_NS):]
        if local not in ALLOWED_ELEMENTS:
            return f"Narrative element <{local}> is not allowed (txt-1)"
        for attr, value in el.attrib.items():
            if attr in XML_ATTRIBUTES:
                continue
            if attr.startswith("{") or attr not in ALLOWED_ATTRIBUTES:
                return f"Narrative attribute '{attr}' on <{local}> is not allowed (txt-1)"
            if attr == "src" and local != "img":
                return f"Narrative <{local}> may not reference external content (txt-1)"
            if attr in ("href", "src") and value.strip().lower().startswith(("javascript:", "vbscript:")):
                return f"Narrative <{local}> {attr} must not be a script (txt-1)"
    if not "".join(root.itertext()).strip() and root.find(".//" + XHTML_NS + "img") is None:
        return "Narrative must have some non-whitespace content (txt-2)"
    return None
