"""Search index tables, one per search parameter type (see ipt_fhir/store/search_tables.py).

Revision ID: 0002_search_index
Revises: 0001_core
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_search_index"
down_revision = "0001_core"
branch_labels = None
depends_on = None

CText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
CStr = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def _key() -> list:
    return [
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(100), nullable=False),
    ]


TABLES = {
    "search_token": (
        [sa.Column("system", sa.Text), sa.Column("code", sa.Text), sa.Column("text", CStr)],
        {"value": ["resource_type", "param", "code", "system", "resource_id"]},
    ),
    "search_string": (
        [sa.Column("value", CStr, nullable=False), sa.Column("exact", sa.Text, nullable=False)],
        {"value": ["resource_type", "param", "value", "resource_id"]},
    ),
    "search_date": (
        [sa.Column("low", sa.BigInteger, nullable=False), sa.Column("high", sa.BigInteger, nullable=False)],
        {"low": ["resource_type", "param", "low", "high", "resource_id"],
         "high": ["resource_type", "param", "high", "resource_id"]},
    ),
    "search_number": (
        [sa.Column("value", sa.Float, nullable=False)],
        {"value": ["resource_type", "param", "value", "resource_id"]},
    ),
    "search_quantity": (
        [sa.Column("value", sa.Float, nullable=False), sa.Column("system", sa.Text), sa.Column("code", sa.Text)],
        {"value": ["resource_type", "param", "code", "value", "resource_id"]},
    ),
    "search_reference": (
        [sa.Column("target_type", sa.String(64)), sa.Column("target_id", sa.String(64)),
         sa.Column("target_version", sa.String(64)), sa.Column("url", CText)],
        {"target": ["resource_type", "param", "target_id", "target_type", "resource_id"],
         "rev": ["target_id", "target_type", "resource_type", "param"],
         "url": ["resource_type", "param", "url"]},
    ),
    "search_uri": (
        [sa.Column("value", CText, nullable=False)],
        {"value": ["resource_type", "param", "value"]},
    ),
    "search_composite": (
        [sa.Column(f"c{i}_{n}", t) for i in (1, 2, 3) for n, t in
         (("a", sa.Text), ("b", sa.Text), ("low", sa.Float), ("high", sa.Float))],
        {"value": ["resource_type", "param", "c1_b", "resource_id"]},
    ),
}


def upgrade() -> None:
    for name, (cols, indexes) in TABLES.items():
        op.create_table(name, *_key(), *[sa.Column(c.name, c.type, nullable=c.nullable) for c in cols])
        for suffix, columns in indexes.items():
            op.create_index(f"ix_{name}_{suffix}", name, columns)
        op.create_index(f"ix_{name}_res", name, ["resource_type", "resource_id", "param"])


def downgrade() -> None:
    for name, (_cols, indexes) in reversed(list(TABLES.items())):
        op.drop_index(f"ix_{name}_res", table_name=name)
        for suffix in indexes:
            op.drop_index(f"ix_{name}_{suffix}", table_name=name)
        op.drop_table(name)
