"""fhir.dates.parse_instant: what $export's _since and a Bundle entry's ifModifiedSince accept."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ipt_fhir.fhir.dates import parse_instant


@pytest.mark.parametrize("text, expected", [
    ("2024-01-31T09:30:00Z", datetime(2024, 1, 31, 9, 30, tzinfo=timezone.utc)),
    ("2024-01-31T09:30:00.250+02:00", datetime(2024, 1, 31, 9, 30, 0, 250000, tzinfo=timezone(timedelta(hours=2)))),
])
def test_an_instant_to_the_second_or_finer_with_its_zone_is_read(text, expected):
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", [
    "2024-01-31", "2024-01-31T09:30:00",  # no time, no zone
    "2024-01-31T09Z", "2024-01-31T09:30Z",  # coarser than a second
    "20240131T093000Z", "2024-W05-3T09:30:00Z", "2024-01-31T09:30:00,5Z",  # ISO 8601 forms FHIR does not use
    "2024-02-30T09:30:00Z", "2024-13-01T09:30:00Z",
])
def test_anything_else_is_not_an_instant(text):
    assert parse_instant(text) is None
