"""The profiles, tags and security labels in use on a type or on the whole server ($meta at those levels),
read from the search index: the `_tag` and `_security` token rows and the `_profile` uri rows. A deleted
resource has no index rows, so what it carried is not in use."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .search_tables import token_index as token
from .search_tables import uri_index as uri


def meta_in_use(conn: Connection, resource_types: list[str] | None, hidden_labels: tuple[tuple[str, str], ...] = ()
                ) -> tuple[list[str], list[tuple], list[tuple]]:
    """(profiles, tags as (system, code), security labels as (system, code)) of the resources of
    `resource_types`, or of every type with None; each sorted, without duplicates. Resources carrying
    one of `hidden_labels` (system, code) do not count."""
    def shown(table: sa.Table) -> list:
        conditions = [] if resource_types is None else [table.c.resource_type.in_(resource_types)]
        if hidden_labels:
            label = token.alias("label")
            conditions.append(~sa.exists().where(
                label.c.resource_type == table.c.resource_type, label.c.resource_id == table.c.resource_id,
                label.c.param == "_security",
                sa.or_(*[sa.and_(label.c.system == system, label.c.code == code) for system, code in hidden_labels])))
        return conditions

    codes = conn.execute(
        sa.select(token.c.param, token.c.system, token.c.code).distinct()
        .where(token.c.param.in_(("_tag", "_security")), *shown(token))).all()
    profiles = conn.execute(
        sa.select(uri.c.value).distinct().where(uri.c.param == "_profile", *shown(uri))).scalars().all()
    by_param: dict[str, list[tuple]] = {"_tag": [], "_security": []}
    for param, system, code in codes:
        by_param[param].append((system, code))
    key = lambda c: (c[0] or "", c[1] or "")  # noqa: E731 - a sort key
    return sorted(profiles), sorted(by_param["_tag"], key=key), sorted(by_param["_security"], key=key)
