"""_include and _revinclude over canonical references (search.html#include; references.html#canonical).

A canonical element (CarePlan.instantiatesCanonical, Questionnaire.derivedFrom, ...) names its target
by the target's `url`, optionally `|version`, not by [type]/[id]: the reference index keeps such a value
as a url with no target type or id (extract.reference_values). So these joins go through the target's
own `url` (search_uri) and `version` (search_token) rows instead of the resource table's key:
- _include: the sources' canonical urls, then the resources whose `url` is one of them (and whose
  `version` is the one given, when the reference gives one);
- _revinclude: the matched resources' `url` and `version`, then the resources that reference them.
Where several stored resources share a url, a reference without a version includes each of them.
The server's own conformance resources (the IPT protocols, profiles, ...) are served from memory
(services/ipt/conformance.py), so they are looked up there as well.
"""
from __future__ import annotations

from sqlalchemy.engine import Connection

from ipt_fhir.fhir.search.registry import registry
from ipt_fhir.store.search_sql import TextSql

Row = tuple[str, str, bytes]


def _canonical_types(resource_type: str, code: str, target: str | None) -> list[str]:
    """The types a canonical of `code` (every reference parameter of the type for `*`) may resolve to:
    those of the types the parameter targets that have a `url` parameter."""
    if target is not None:
        candidates = {target}
    else:
        params = registry().params(resource_type)
        chosen = params.values() if code == "*" else [params[code]] if code in params else []
        candidates = {t for p in chosen if p.type == "reference" for t in p.targets or ()}
    return sorted(t for t in candidates if "url" in registry().params(t))


def _served():  # noqa: ANN202 - the served conformance registry, or None before the IPT layer is installed
    from ipt_fhir.services.ipt import conformance

    return conformance.active()


def _version_ok(wanted: str | None, actual: str | None) -> bool:
    return wanted is None or wanted == actual


def included(conn: Connection, resource_type: str, ids: list[str], code: str, target: str | None) -> list[Row]:
    """The resources the canonical references of `code` (`*`: any parameter) in the `resource_type`
    resources `ids` resolve to, restricted to type `target` if given."""
    types = _canonical_types(resource_type, code, target)
    if not types or not ids:
        return []
    tb = TextSql(conn.dialect.name, "")
    sql = (f"SELECT DISTINCT t.url, t.target_version FROM search_reference t WHERE t.resource_type = "
           f"{tb.p(resource_type)} AND {tb.in_('t.resource_id', ids)} AND t.target_id IS NULL "
           f"AND t.url IS NOT NULL")
    if code != "*":
        sql += f" AND {tb.param_is('t', 'search_reference', resource_type, code)}"
    wanted: dict[str, set[str | None]] = {}
    for url, version in conn.exec_driver_sql(sql, tb.params):
        wanted.setdefault(url, set()).add(version)
    if not wanted:
        return []
    out: list[Row] = []
    served = _served()
    if served is not None:
        for url, versions in wanted.items():
            key = served.urls.get(url)
            if key is not None and key[0] in types:
                actual = served.get(*key).get("version")
                if any(_version_ok(v, actual) for v in versions):
                    out.append((key[0], key[1], served.content(*key)))
    tb = TextSql(conn.dialect.name, "")
    sql = (f"SELECT x.resource_type, x.id, x.content, u.value, v.code FROM search_uri u "
           f"JOIN resource x ON x.resource_type = u.resource_type AND x.id = u.resource_id "
           f"LEFT JOIN search_token v ON v.resource_type = u.resource_type AND v.resource_id = u.resource_id "
           f"AND v.param = 'version' "
           f"WHERE {tb.in_('u.resource_type', types)} AND u.param = 'url' AND {tb.in_('u.value', list(wanted))} "
           f"AND x.deleted = {tb.p(False)}")
    for rt, rid, content, url, actual in conn.exec_driver_sql(sql, tb.params):
        if any(_version_ok(v, actual) for v in wanted[url]):
            out.append((rt, rid, content))
    return out


def revincluded(conn: Connection, resource_type: str, ids: list[str], source: str, code: str) -> list[Row]:
    """The resources (of type `source`, `*` any) whose canonical references of `code` (`*`: any
    parameter) name one of the `resource_type` resources `ids` by its url (and version, if they give one)."""
    if not ids or "url" not in registry().params(resource_type):
        return []
    versions: dict[str, set[str | None]] = {}  # url -> the versions the matched resources carry
    served = _served()
    if served is not None:
        for rid in ids:
            own = served.get(resource_type, rid)
            if own is not None and isinstance(own.get("url"), str):
                versions.setdefault(own["url"], set()).add(own.get("version"))
    tb = TextSql(conn.dialect.name, "")
    sql = (f"SELECT u.value, v.code FROM search_uri u LEFT JOIN search_token v ON v.resource_type = "
           f"u.resource_type AND v.resource_id = u.resource_id AND v.param = 'version' "
           f"WHERE u.resource_type = {tb.p(resource_type)} AND {tb.in_('u.resource_id', ids)} AND u.param = 'url'")
    for url, version in conn.exec_driver_sql(sql, tb.params):
        versions.setdefault(url, set()).add(version)
    if not versions:
        return []
    tb = TextSql(conn.dialect.name, "")
    sql = (f"SELECT x.resource_type, x.id, x.content, t.url, t.target_version FROM search_reference t "
           f"JOIN resource x ON x.resource_type = t.resource_type AND x.id = t.resource_id "
           f"WHERE t.target_id IS NULL AND {tb.in_('t.url', list(versions))} AND x.deleted = {tb.p(False)}")
    if source != "*":
        sql += f" AND t.resource_type = {tb.p(source)}"
        if code != "*":
            sql += f" AND {tb.param_is('t', 'search_reference', source, code)}"
    out: list[Row] = []
    seen: set[tuple[str, str]] = set()
    for rt, rid, content, url, wanted in conn.exec_driver_sql(sql, tb.params):
        if (rt, rid) not in seen and (wanted is None or wanted in versions[url]):
            seen.add((rt, rid))
            out.append((rt, rid, content))
    return out
