"""Bulk jobs ($import, $export): one row per job, so a job outlives the request that started it and
the process that ran it (a killed server's running job is picked up again on start)."""
from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

UtcDateTime = sa.DateTime(timezone=True)


class BulkJobRow(SQLModel, table=True):
    __tablename__ = "bulk_job"
    __table_args__ = (sa.Index("ix_bulk_job_status", "status"),)

    id: str = Field(sa_column=sa.Column(sa.String(64), primary_key=True))
    kind: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))  # import | export
    status: str = Field(sa_column=sa.Column(sa.String(16), nullable=False))  # queued|running|interrupted|completed|failed|cancelled
    request: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON: what was asked
    progress: Optional[str] = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))  # JSON
    result: Optional[str] = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))  # JSON manifest
    created: datetime = Field(sa_column=sa.Column(UtcDateTime, nullable=False))
    updated: datetime = Field(sa_column=sa.Column(UtcDateTime, nullable=False))


bulk_job_table: sa.Table = BulkJobRow.__table__  # type: ignore[assignment]
