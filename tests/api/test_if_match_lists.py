"""If-Match with `*` or a list holding it (RFC 9110 13.1.1): false when there is no current
representation, so an update of a deleted resource is refused, and nothing is written."""
from __future__ import annotations

import pytest

from tests.api.test_crud import patient


@pytest.mark.parametrize("tag", ["*", 'W/"7", *'])
def test_update_with_if_match_star_of_a_deleted_resource_is_412(client, tag):
    client.put("/fhir/Patient/gone", json=patient(id="gone"))
    client.delete("/fhir/Patient/gone")
    r = client.put("/fhir/Patient/gone", json=patient(id="gone"), headers={"If-Match": tag})
    assert r.status_code == 412, r.text
    assert client.get("/fhir/Patient/gone").status_code == 410
    assert client.get("/fhir/Patient/gone/_history").json()["total"] == 2
