"""Reading references (http://hl7.org/fhir/R4/references.html): the parts of a RESTful absolute URL, the
contained resource a local `#id` reference names, and a URL relative to this server's base."""
from __future__ import annotations

import re

from .resource_types import RESOURCE_TYPES

# references.html#regex, with the [base] captured: [base]/[type]/[id], optionally /_history/[vid]
_RESTFUL_URL = re.compile(r"(https?://[A-Za-z0-9\-\\.:%$/]*?)/([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})"
                          r"(?:/_history/[A-Za-z0-9\-.]{1,64})?", re.ASCII)


def restful_parts(url: str | None) -> tuple[str, str, str] | None:
    """([base], [type], [id]) of a RESTful absolute URL naming an R4 resource type; None otherwise (a urn,
    another kind of URL)."""
    if url is None or not url.startswith(("http://", "https://")):
        return None
    m = _RESTFUL_URL.fullmatch(url)
    return m.group(1, 2, 3) if m is not None and m.group(2) in RESOURCE_TYPES else None


def contained_resource(container: dict, ref: str) -> dict | None:
    """The resource among `container`'s contained ones that the local reference `#id` names; None when
    none does (or `contained` is malformed, which the structure check reports)."""
    contained = container.get("contained")
    if type(contained) is not list:
        return None
    cid = ref[1:]
    return next((c for c in contained if type(c) is dict and c.get("id") == cid), None)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")  # RFC 3986 3.1: what makes a URL absolute


def on_this_server(url: str, base_url: str) -> str | None:
    """`url` relative to this server's base `base_url`: as written when it is relative, without the base
    when it is under it, None when it is an absolute URL elsewhere (another server's Patient/1 or
    Patient?identifier=… names nothing here). A leading '/' is dropped."""
    base = base_url.rstrip("/")
    if base and (url == base or url.startswith((base + "/", base + "?"))):
        url = url[len(base):]
    elif _SCHEME.match(url):
        return None
    return url.lstrip("/")
