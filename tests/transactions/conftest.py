from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import FIXTURES

SYNTHEA_BUNDLES = sorted((FIXTURES / "synthea" / "bundles").glob("*.json.gz"))

FHIR_JSON = {"content-type": "application/fhir+json"}


def synthea_bundle(path) -> bytes:
    return gzip.decompress(path.read_bytes())


def post_bundle(client, bundle: dict | bytes, **headers):
    body = bundle if isinstance(bundle, bytes) else json.dumps(bundle).encode()
    return client.post("/fhir", content=body, headers={**FHIR_JSON, **headers})


def created(response, index: int) -> str:
    """`Type/id` of what entry `index` of a transaction-response created (its Location, less _history)."""
    return "/".join(response.json()["entry"][index]["response"]["location"].split("/")[:2])


def table_counts(database) -> dict[str, int]:
    import sqlalchemy as sa

    from ipt_fhir.store import all_tables  # noqa: F401
    from ipt_fhir.store.tables import metadata

    with database.read() as conn:
        return {name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for name, t in metadata.tables.items()}


@pytest.fixture
def hook_registry():
    """Register write hooks for one test only."""
    from ipt_fhir.services import write_hooks

    added = []

    def register(hook):
        write_hooks.register(hook)
        added.append(hook)

    yield register
    for hook in added:
        write_hooks._hooks.remove(hook)
