"""IPT read model: one row per CarePlan with its current progress (see services/ipt.py).

The row is written in the same transaction as the resource writes that change it, so
CarePlan/[id]/$ipt-progress is a single primary-key read.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

UtcDateTime = sa.DateTime(timezone=True)


class IptPlanProgressRow(SQLModel, table=True):
    __tablename__ = "ipt_plan_progress"
    __table_args__ = (sa.Index("ix_ipt_plan_progress_subject", "subject"),)

    careplan_id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    # "Patient/123" (the CarePlan's subject reference), for per-patient listings.
    subject: Optional[str] = Field(default=None, sa_column=sa.Column(sa.String(255), nullable=True))
    # The PlanProgress row (ipt_fhir.domain.progress.PlanProgress.to_row()) as JSON text.
    progress: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    updated: datetime = Field(sa_column=sa.Column(UtcDateTime, nullable=False))


ipt_plan_progress_table: sa.Table = IptPlanProgressRow.__table__  # type: ignore[assignment]
