"""_include and _revinclude over canonical references (search.html#include; references.html#canonical).

A canonical element (CarePlan.instantiatesCanonical, Questionnaire.derivedFrom, ...) names its target
by the target's `url`, optionally `|version`, not by [type]/[id]: the reference index keeps such a value
as a url with no target type or id (extract.reference_values). So these joins go through the target's
own `url` (search_uri) and `version` (search_token) rows instead of the resource table's key:
- _include: the sources' canonical urls, then the resources whose `url` is one of them (and whose
  `version` is the one given, when the reference gives one);
- _revinclude: the matched resources' `url` and `version`, then the resources that reference them.
Where several stored resources share a url, a reference without a version includes each of them.
"""
from __future__ import annotations

from functools import lru_cache

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.resource_types import REST_TYPES
from ipt_fhir.fhir.search.path_types import names_by_url
from ipt_fhir.fhir.search.registry import registry
from ipt_fhir.store.search_sql import TextSql

Row = tuple[str, str, bytes]

@lru_cache(maxsize=None)  # keyed by the R4 resource types
def _capable(resource_type: str) -> dict[str, str]:
    """The reference parameters of `resource_type` that may hold a url-named value: code -> the stored
    parameter its index rows carry (search_reference.param)."""
    reg = registry()
    return {code: reg.stored_reference(resource_type, code)[0] for code, p in reg.params(resource_type).items()
            if p.type == "reference" and names_by_url(resource_type, code)}


def _canonical_types(resource_type: str, code: str, target: str | None) -> list[str]:
    """The types a canonical of `code` (every reference parameter of the type for `*`) may resolve to:
    none if no such parameter may hold a url-named value (names_by_url); else `target`, or those of the
    types the parameters target, that have a `url` parameter."""
    params = registry().params(resource_type)
    chosen = [params[c] for c in _capable(resource_type) if code in ("*", c)]
    if not chosen:
        return []
    candidates = {target} if target is not None else {t for p in chosen for t in p.targets or ()}
    return sorted(t for t in candidates if "url" in registry().params(t))


def _version_ok(wanted: str | None, actual: str | None) -> bool:
    return wanted is None or wanted == actual


def _versions(conn: Connection, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The `version` of stored resources, by (type, id): one keyed lookup per type (resource_type,
    resource_id, param), rather than a join the planner may run from the other end."""
    by_type: dict[str, list[str]] = {}
    for rt, rid in pairs:
        by_type.setdefault(rt, []).append(rid)
    out: dict[tuple[str, str], str] = {}
    for rt, ids in by_type.items():
        tb = TextSql(conn.dialect.name, "")
        sql = (f"SELECT v.resource_id, v.code FROM search_token v WHERE v.resource_type = {tb.p(rt)} "
               f"AND {tb.in_('v.resource_id', ids)} AND v.param = 'version'")
        out.update(((rt, rid), code) for rid, code in conn.exec_driver_sql(sql, tb.params))
    return out


def included(conn: Connection, resource_type: str, ids: list[str], code: str, target: str | None,
             limit: int) -> list[Row]:
    """The resources (at most about `limit`) the canonical references of `code` (`*`: any parameter)
    in the `resource_type` resources `ids` resolve to, restricted to type `target` if given."""
    types = _canonical_types(resource_type, code, target)
    if not types or not ids:
        return []
    tb = TextSql(conn.dialect.name, "")
    sql = (f"SELECT DISTINCT t.url, t.target_version FROM search_reference t WHERE t.resource_type = "
           f"{tb.p(resource_type)} AND {tb.in_('t.resource_id', ids)} AND t.target_id IS NULL "
           f"AND t.url IS NOT NULL")
    if code != "*":
        sql += f" AND {tb.param_is('t', 'search_reference', resource_type, code)}"
    else:  # not the url rows of parameters that hold References only (an absolute http://x/y)
        sql += f" AND {tb.in_('t.param', sorted(set(_capable(resource_type).values())))}"
    wanted: dict[str, set[str | None]] = {}
    for url, version in conn.exec_driver_sql(sql, tb.params):
        wanted.setdefault(url, set()).add(version)
    if not wanted:
        return []
    out: list[Row] = []
    tb = TextSql(conn.dialect.name, "")
    sql = (f"SELECT x.resource_type, x.id, x.content, u.value FROM search_uri u "
           f"JOIN resource x ON x.resource_type = u.resource_type AND x.id = u.resource_id "
           f"WHERE {tb.in_('u.resource_type', types)} AND u.param = 'url' AND {tb.in_('u.value', list(wanted))} "
           f"AND x.deleted = {tb.p(False)} LIMIT {int(limit) + 1}")
    found = [tuple(row) for row in conn.exec_driver_sql(sql, tb.params)]
    versioned = any(v is not None for versions in wanted.values() for v in versions)
    actual = _versions(conn, [(rt, rid) for rt, rid, _, _ in found]) if versioned else {}
    out += [(rt, rid, content) for rt, rid, content, url in found
            if any(_version_ok(v, actual.get((rt, rid))) for v in wanted[url])]
    return out


@lru_cache(maxsize=256)
def _canonical_sources(resource_type: str, source: str, code: str) -> tuple[tuple[str, str], ...]:
    """(source type, stored parameter) pairs whose references may name a `resource_type` by url: the
    given ones, or for `*` every reference parameter (of every type, for source `*`) targeting it; of
    these only those that may hold a url-named value (names_by_url). Each is then one lookup on the
    (resource_type, param, url) index instead of a scan of every url row."""
    reg = registry()
    if source != "*" and code != "*":
        stored, target_type = reg.stored_reference(source, code)
        return () if target_type or not names_by_url(source, code) else ((source, stored),)
    pairs = []
    for src in ([source] if source != "*" else sorted(REST_TYPES)):
        for c, p in reg.params(src).items():
            if (p.type == "reference" and resource_type in (p.targets or ()) and not reg.reference_alias(src, c)
                    and names_by_url(src, c)):
                pairs.append((src, c))
    return tuple(pairs)


def revincluded(conn: Connection, resource_type: str, ids: list[str], source: str, code: str,
                limit: int) -> list[Row]:
    """The resources (at most about `limit`; of type `source`, `*` any) whose canonical references of
    `code` (`*`: any parameter) name one of the `resource_type` resources `ids` by its url (and version,
    if they give one)."""
    sources = _canonical_sources(resource_type, source, code) if "url" in registry().params(resource_type) else ()
    if not ids or not sources:  # nothing can name these by url: no lookup of their urls and versions
        return []
    versions: dict[str, set[str | None]] = {}  # url -> the versions the matched resources carry
    tb = TextSql(conn.dialect.name, "")
    sql = (f"SELECT u.resource_id, u.value FROM search_uri u WHERE u.resource_type = {tb.p(resource_type)} "
           f"AND {tb.in_('u.resource_id', ids)} AND u.param = 'url'")
    urls = [tuple(row) for row in conn.exec_driver_sql(sql, tb.params)]
    stored_versions = _versions(conn, [(resource_type, rid) for rid, _ in urls])
    for rid, url in urls:
        versions.setdefault(url, set()).add(stored_versions.get((resource_type, rid)))
    if not versions:
        return []
    out: list[Row] = []
    seen: set[tuple[str, str]] = set()
    for src, param in sources:
        tb = TextSql(conn.dialect.name, "")
        sql = (f"SELECT x.resource_type, x.id, x.content, t.url, t.target_version FROM search_reference t "
               f"JOIN resource x ON x.resource_type = t.resource_type AND x.id = t.resource_id "
               f"WHERE t.resource_type = {tb.p(src)} AND t.param = {tb.p(param)} AND {tb.in_('t.url', list(versions))} "
               f"AND t.target_id IS NULL AND x.deleted = {tb.p(False)} LIMIT {int(limit) + 1}")
        for rt, rid, content, url, wanted in conn.exec_driver_sql(sql, tb.params):
            if (rt, rid) not in seen and (wanted is None or wanted in versions[url]):
                seen.add((rt, rid))
                out.append((rt, rid, content))
        if len(out) > limit:
            break
    return out
