"""Runtime configuration: one Settings object read from `IPT_FHIR_*` environment variables."""
from __future__ import annotations

from functools import lru_cache
from typing import Literal

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
    index_worker: Literal["on", "off"] = Field(
        default="on", description="SQLite: a child process per server worker extracts the search index rows "
        "of new resources on another core (ipt_fhir/store/index_worker.py); off: the server does it itself")
    # --- operations (README "Operations"; ipt_fhir/observability.py) ---
    workers: int = Field(default=1, ge=1, description="Worker processes of `ipt-fhir serve` (its --workers overrides)")
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level")
    log_format: Literal["json", "text"] = Field(default="json", description="json: one JSON object per line "
                                                "with request_id, interaction, route template and timing")
    shutdown_timeout: int = Field(default=20, ge=0, description="Seconds in-flight requests get to finish on SIGTERM")
    # --- security (README "Security"; enforced by ipt_fhir/security) ---
    auth: Literal["off", "smart"] = Field(
        default="off", description="smart: OAuth2 bearer JWTs with SMART scopes. off: only for the embedded "
        "SQLite database on localhost (`ipt-fhir serve` refuses anything else)")
    jwks: str | None = Field(default=None, description="JWKS of the token issuer: a file path or an https URL")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` of access tokens")
    jwt_audience: str | None = Field(default=None, description="Required `aud` of access tokens (this server's base URL)")
    jwt_hs256_secret: str | None = Field(default=None, description="Development only: accept HS256 tokens signed with this secret")
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat")
    sensitive_scope: str = Field(default="ipt/sensitive.read", description="Extra scope needed to read resources "
                                 "labelled PSYTHPN (psychotherapy note) or R (restricted) in meta.security")
    audit: Literal["on", "off"] | None = Field(default=None, description="AuditEvent per request; default on when auth=smart")
    smart_authorize_url: str | None = Field(default=None, description="authorization_endpoint for /.well-known/smart-configuration")
    smart_token_url: str | None = Field(default=None, description="token_endpoint for /.well-known/smart-configuration")
    forwarded_allow_ips: str = Field(
        default="127.0.0.1", description="Comma-separated addresses or CIDR networks of the reverse proxies "
        "whose X-Forwarded-For/-Proto/-Host/-Prefix headers are believed ('*': any peer); others' are ignored")
    cors_origins: str = Field(default="", description="Comma-separated allowed CORS origins; empty: CORS off")
    max_json_depth: int = Field(default=64, ge=8, description="Deepest JSON nesting accepted in a request body")

    @property
    def audit_enabled(self) -> bool:
        return self.audit == "on" if self.audit is not None else self.auth == "smart"
    max_bundle_entries: int = Field(default=20000, ge=1, description="Most entries in a batch/transaction Bundle (413 beyond)")
    bulk_dir: str = Field(default="./ipt-fhir-bulk", description="Directory for bulk export files and import uploads")
    bulk_import_batch: int = Field(default=1000, ge=1, description="Resources per committed batch in $import")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
