"""HTTP dates (RFC 9110 5.6.7): a version's Last-Modified and every response's Date, one format."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from email.utils import format_datetime
from functools import lru_cache


def http_date(t: datetime) -> str:
    return _http_date_of_second(int(t.timestamp()))


def current_http_date() -> str:
    """Now, for a response's Date: read as the response starts, so never before the writes it reports."""
    return _http_date_of_second(int(time.time()))


@lru_cache(maxsize=1024)  # HTTP dates have whole seconds: versions written in one second share one
def _http_date_of_second(epoch_second: int) -> str:
    return format_datetime(datetime.fromtimestamp(epoch_second, timezone.utc), usegmt=True)
