"""Partial indexes on the high end of Range rows in search_number and search_quantity.

Since 0011 `gt`, `ge` and `ap` reach a Range by its high end; with no index on `high` each such search read
every row of its parameter. These indexes hold only Range rows (high <> value: a number or Quantity is the
range [n, n]), so points cost nothing more to write, and number_search.range_terms finds points by the
value index and Ranges by these.

Revision ID: 0012_range_high_index
Revises: 0011_number_ranges
"""
from alembic import op
import sqlalchemy as sa

revision = "0012_range_high_index"
down_revision = "0011_number_ranges"
branch_labels = None
depends_on = None

RANGE_ROWS = sa.text("high <> value")
INDEXES = {
    "ix_search_number_high": ("search_number", ["resource_type", "param", "high", "resource_id"]),
    "ix_search_quantity_high": ("search_quantity", ["resource_type", "param", "code", "high", "resource_id"]),
}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns, sqlite_where=RANGE_ROWS, postgresql_where=RANGE_ROWS)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
