"""search_*_pending: index-less twins of the search index tables, where SQLite holds the index rows of
newly created resources until they move into the index in batches (ipt_fhir/store/pending_index.py).

The downgrade first moves any pending rows into the index tables, so no row is lost. PostgreSQL never
fills these tables; they exist there too so that both databases have one schema.

Revision ID: 0010_pending_index_rows
Revises: 0009_implicit_code_systems
"""
from alembic import op
import sqlalchemy as sa

revision = "0010_pending_index_rows"
down_revision = "0009_implicit_code_systems"
branch_labels = None
depends_on = None

CText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
CStr = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")


def _composite() -> list:
    return [sa.Column(f"c{i}_{part}", kind) for i in (1, 2, 3)
            for part, kind in (("a", sa.Text), ("b", sa.Text), ("low", sa.Float), ("high", sa.Float))]


# The columns of each index table at 0009, frozen here (after the key columns).
COLUMNS = {
    "search_token": lambda: [sa.Column("system", sa.Text), sa.Column("code", sa.Text), sa.Column("text", CStr)],
    "search_string": lambda: [sa.Column("value", CStr, nullable=False), sa.Column("exact", sa.Text, nullable=False),
                              sa.Column("value_full", CText)],
    "search_date": lambda: [sa.Column("low", sa.BigInteger, nullable=False),
                            sa.Column("high", sa.BigInteger, nullable=False)],
    "search_number": lambda: [sa.Column("value", sa.Float, nullable=False)],
    "search_quantity": lambda: [sa.Column("value", sa.Float, nullable=False), sa.Column("system", sa.Text),
                                sa.Column("code", sa.Text)],
    "search_reference": lambda: [sa.Column("target_type", sa.String(64)), sa.Column("target_id", sa.String(64)),
                                 sa.Column("target_version", sa.String(64)), sa.Column("url", CText)],
    "search_uri": lambda: [sa.Column("value", CText, nullable=False)],
    "search_composite": _composite,
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        op.create_table(
            f"{table}_pending",
            sa.Column("resource_type", sa.String(64), nullable=False),
            sa.Column("resource_id", sa.String(64), nullable=False),
            sa.Column("param", sa.String(100), nullable=False),
            *columns(),
        )


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        names = ", ".join(["resource_type", "resource_id", "param"] + [c.name for c in columns()])
        op.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_pending")
        op.drop_table(f"{table}_pending")
