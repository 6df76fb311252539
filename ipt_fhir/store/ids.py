"""Server-assigned logical ids: time-ordered UUIDs (UUIDv7, RFC 9562).

Random (v4) ids scatter every insert across the whole B-tree of each index that ends in the resource
id (the resource and history keys, every search table's value and per-resource indexes): each create
then dirties one random leaf page per index row, which on SQLite means a WAL frame each, and the pages
a large store needs stop fitting in the cache. Ids that grow with time append at the right edge
instead, so consecutive writes share pages. They stay opaque, unique across processes (74 random bits
per millisecond) and valid FHIR ids (36 characters of [0-9a-f-]).
"""
from __future__ import annotations

import os
import time


def new_resource_id() -> str:
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are kept
    value = (millis & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a: 12 bits
    value |= 0b10 << 62  # RFC 9562 variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b: 62 bits
    h = f"{value:032x}"  # str(uuid.UUID(int=value)), without the UUID object's checks
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
