"""IPT read model: per-CarePlan progress row (see ipt_fhir/store/ipt_tables.py).

Revision ID: 0003_ipt_read_model
Revises: 0002_search_index
"""
from alembic import op
import sqlalchemy as sa

revision = "0003_ipt_read_model"
down_revision = "0002_search_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ipt_plan_progress",
        sa.Column("careplan_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(255), nullable=True),
        sa.Column("progress", sa.Text, nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ipt_plan_progress_subject", "ipt_plan_progress", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_ipt_plan_progress_subject", table_name="ipt_plan_progress")
    op.drop_table("ipt_plan_progress")
