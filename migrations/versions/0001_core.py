"""Core versioned resource store: current versions, history, conditional-create keys.

Revision ID: 0001_core
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001_core"
down_revision = None
branch_labels = None
depends_on = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=True),
    )
    op.create_table(
        "resource_history",
        sa.Column("seq", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=True),
        sa.UniqueConstraint("resource_type", "id", "version_id", name="uq_history_version"),
    )
    op.create_index("ix_history_type_seq", "resource_history", ["resource_type", "seq"])
    op.create_index("ix_history_last_updated", "resource_history", ["last_updated"])
    op.create_table(
        "conditional_create_key",
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("criteria_hash", sa.String(64), primary_key=True),
        sa.Column("resource_id", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("conditional_create_key")
    op.drop_index("ix_history_last_updated", table_name="resource_history")
    op.drop_index("ix_history_type_seq", table_name="resource_history")
    op.drop_table("resource_history")
    op.drop_table("resource")
