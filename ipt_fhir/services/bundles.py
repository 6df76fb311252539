"""Bundles assembled from stored bytes: each resource's JSON is spliced in as it is stored, so a page
of results costs one serialisation of the envelope, not a parse and dump of every resource."""
from __future__ import annotations

from ipt_fhir.fhir.jsonio import dump_json


def splice_bundle(head: dict, entries: list[tuple[dict, bytes | None]]) -> bytes:
    """`head` is the Bundle without `entry`; each entry is (entry without resource, resource bytes)."""
    if not entries:
        return dump_json(head)
    parts = []
    for entry, content in entries:
        encoded = dump_json(entry)
        if content is not None:
            # '{"fullUrl":…}' + resource → '{"fullUrl":…,"resource":<bytes>}'
            encoded = encoded[:-1] + b',"resource":' + content + b"}"
        parts.append(encoded)
    return dump_json(head)[:-1] + b',"entry":[' + b",".join(parts) + b"]}"
