"""search_reference: one index by target instead of two, and the url index only over url rows.

Every index B-tree an insert touches costs a page write per row at commit (a WAL frame on SQLite),
and the reference table has the most rows per resource. Forward searches (`subject=Patient/1`),
chains, `_revinclude` and compartments all fix target_id, so one index led by it serves them all;
ending in resource_id makes it covering. Relative references (most of them) have no url, so the url
index now holds only the rows that do.

Revision ID: 0006_leaner_reference_index
Revises: 0005_search_string_full
"""
from alembic import op
import sqlalchemy as sa

revision = "0006_leaner_reference_index"
down_revision = "0005_search_string_full"
branch_labels = None
depends_on = None

_HAS_URL = sa.text("url IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_search_reference_target", table_name="search_reference")
    op.drop_index("ix_search_reference_rev", table_name="search_reference")
    op.drop_index("ix_search_reference_url", table_name="search_reference")
    op.create_index("ix_search_reference_target", "search_reference",
                    ["target_id", "target_type", "resource_type", "param", "resource_id"])
    op.create_index("ix_search_reference_url", "search_reference", ["resource_type", "param", "url"],
                    sqlite_where=_HAS_URL, postgresql_where=_HAS_URL)


def downgrade() -> None:
    op.drop_index("ix_search_reference_url", table_name="search_reference")
    op.drop_index("ix_search_reference_target", table_name="search_reference")
    op.create_index("ix_search_reference_url", "search_reference", ["resource_type", "param", "url"])
    op.create_index("ix_search_reference_rev", "search_reference",
                    ["target_id", "target_type", "resource_type", "param"])
    op.create_index("ix_search_reference_target", "search_reference",
                    ["resource_type", "param", "target_id", "target_type", "resource_id"])
