"""The profiles, tags and security labels in use on a type or on the whole server ($meta at those levels),
read from the search index: the `_tag` and `_security` token rows and the `_profile` uri rows. A deleted
resource has no index rows, so what it carried is not in use."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .search_tables import token_index as token
from .search_tables import uri_index as uri


def meta_in_use(conn: Connection, resource_types: list[str] | None) -> tuple[list[str], list[tuple], list[tuple]]:
    """(profiles, tags as (system, code), security labels as (system, code)) of the resources of
    `resource_types`, or of every type with None; each sorted, without duplicates."""
    def of_types(table: sa.Table) -> list:
        return [] if resource_types is None else [table.c.resource_type.in_(resource_types)]

    codes = conn.execute(
        sa.select(token.c.param, token.c.system, token.c.code).distinct()
        .where(token.c.param.in_(("_tag", "_security")), *of_types(token))).all()
    profiles = conn.execute(
        sa.select(uri.c.value).distinct().where(uri.c.param == "_profile", *of_types(uri))).scalars().all()
    by_param: dict[str, list[tuple]] = {"_tag": [], "_security": []}
    for param, system, code in codes:
        by_param[param].append((system, code))
    key = lambda c: (c[0] or "", c[1] or "")  # noqa: E731 - a sort key
    return sorted(profiles), sorted(by_param["_tag"], key=key), sorted(by_param["_security"], key=key)
