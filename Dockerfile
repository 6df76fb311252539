# ipt-fhir: FHIR R4 server for Interpersonal Psychotherapy.
#   docker build -t ipt-fhir .
#   docker run ... ipt-fhir            (README "Docker": PostgreSQL, authorization, migrations)
# Slim, non-root, no compilers or curl in the final image; configured only by IPT_FHIR_* variables.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY ipt_fhir ./ipt_fhir
COPY migrations ./migrations
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile . \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="ipt-fhir" \
      org.opencontainers.image.description="FHIR R4 server and system of record for Interpersonal Psychotherapy"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IPT_FHIR_HOST=0.0.0.0 \
    IPT_FHIR_PORT=8080 \
    IPT_FHIR_WORKERS=2 \
    IPT_FHIR_LOG_FORMAT=json \
    IPT_FHIR_MIGRATE_ON_START=false \
    IPT_FHIR_DATABASE_URL=sqlite:////data/ipt-fhir.db \
    IPT_FHIR_BULK_DIR=/data/bulk
RUN groupadd --system --gid 10001 ipt \
    && useradd --system --uid 10001 --gid ipt --home-dir /data --no-create-home --shell /usr/sbin/nologin ipt \
    && mkdir -p /data \
    && chown ipt:ipt /data
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/ipt-fhir-entrypoint
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
# Liveness only: readiness (/readyz) is for the orchestrator or load balancer to ask.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('IPT_FHIR_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["ipt-fhir-entrypoint"]
CMD ["serve"]
