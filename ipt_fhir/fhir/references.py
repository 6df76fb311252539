"""Reading references (http://hl7.org/fhir/R4/references.html): the parts of a RESTful absolute URL, the
contained resource a local `#id` reference names, and what a conditional reference searches."""
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


class ForeignSearch(ValueError):
    """A search URL on another server where a conditional reference was expected."""


def conditional_parts(ref: str, base_url: str) -> tuple[str, str]:
    """([type], [query]) of a conditional reference (http.html#trules: "The search URI is relative to the
    server's [base] path, and always starts with a resource type: [type]?parameters..."). A search URL
    under this server's own `base_url` counts as the relative one; a search URL on another server raises
    ForeignSearch: resolving its query here would point the reference at an unrelated local resource. The
    type is as written: the caller checks it names a resource type."""
    head, _, query = ref.partition("?")
    if head.startswith(("http://", "https://")):
        own = base_url.rstrip("/") + "/"
        if not head.startswith(own):
            raise ForeignSearch(ref)
        head = head[len(own):]
    return head, query
