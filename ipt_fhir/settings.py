"""Runtime configuration: one Settings object read from `IPT_FHIR_*` environment variables."""
from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IPT_FHIR_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./ipt-fhir.db",
        description="SQLAlchemy URL. Default: an embedded SQLite file in the working directory. "
        "PostgreSQL: postgresql+psycopg://user:password@host/dbname",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    canonical_base: str = Field(
        default="http://ipt-fhir.org/fhir",
        description="Canonical base URL of the IPT profiles, code systems and protocols this server publishes",
    )
    default_page_size: int = Field(default=20, ge=1, description="_count when a search does not give one")
    max_page_size: int = Field(default=1000, ge=1, description="Upper bound on _count")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, description="Largest accepted request body")
    db_pool_size: int = Field(default=10, description="Connections per worker (PostgreSQL)")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
