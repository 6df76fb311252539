"""Dependency aliases (Annotated) for routes; tests swap them with app.dependency_overrides."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ipt_fhir.services.history import HistoryService
from ipt_fhir.services.resources import ResourceService
from ipt_fhir.settings import Settings
from ipt_fhir.store.database import Database


# async: FastAPI runs plain `def` dependencies in the thread pool, a needless hop for a lookup.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.database


async def get_resource_service(request: Request) -> ResourceService:
    return request.app.state.resource_service


async def get_history_service(request: Request) -> HistoryService:
    return request.app.state.history_service


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ResourcesDep = Annotated[ResourceService, Depends(get_resource_service)]
HistoryDep = Annotated[HistoryService, Depends(get_history_service)]
