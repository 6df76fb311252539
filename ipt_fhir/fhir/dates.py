"""FHIR date/dateTime/instant values as UTC ranges [low, high) at their written precision
(http://hl7.org/fhir/R4/search.html#date): '2024' is all of 2024, '2024-03-01T10:00Z' one minute."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from .outcome import bad_request

# The written forms of a FHIR date, dateTime or instant, at any precision (a time has its minutes); the
# values' own checks (a month 13, an offset beyond ±14:00) are the parsers'.
DATE_TIME = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def valid_offset(tz: str) -> bool:
    """Whether a written time zone ('Z', '+05:30') is one the R4 grammar takes: -14:00 to +14:00, minutes
    below 60 (datatypes.html#dateTime)."""
    if tz == "Z":
        return True
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    return minutes < 60 and (hours < 14 or (hours == 14 and minutes == 0))


def parse_instant(text: str) -> datetime | None:
    """A FHIR instant (2024-01-31T09:30:00Z: a time, to the second or finer, and a time zone) as an aware
    datetime; None for anything else. The FHIR grammar (DATE_TIME) decides what is written as one, not
    ISO 8601's wider one (which also takes hours alone, week dates and compact forms)."""
    m = DATE_TIME.fullmatch(text)
    if m is None or m["S"] is None or m["tz"] is None or not valid_offset(m["tz"]):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # a month 13, a 30 February
        return None


def since_param(value: str) -> datetime:
    """The `_since` of $everything and $export: an instant with a time zone (a bare date or a time
    without zone names no single moment), else a 400 naming `_since`."""
    when = parse_instant(value)
    if when is None:
        raise bad_request(f"_since {value!r} is not a FHIR instant with a time zone", "_since")
    return when


def parse_fhir_datetime_range(text: str) -> tuple[datetime, datetime]:
    """[low, high) in UTC for a FHIR date, dateTime or instant. Raises ValueError when malformed.
    A time without a zone is read as UTC (the server's zone). A range reaching past 9999-12-31 (the last
    instant FHIR and Python can write) ends at that instant instead; one that starts outside the years
    1-9999 once moved to UTC is refused like a malformed value."""
    m = DATE_TIME.fullmatch(text.strip())
    if not m:
        raise ValueError(f"'{text}' is not a FHIR date or dateTime")
    g = m.groupdict()
    year = int(g["y"])
    if g["m"] is None:
        return _utc(year, 1, 1), _year_start_or_latest(year + 1)
    month = int(g["m"])
    if g["d"] is None:
        low = _utc(year, month, 1)
        return low, _year_start_or_latest(year + 1) if month == 12 else _utc(year, month + 1, 1)
    day = int(g["d"])
    if g["H"] is None:
        low = _utc(year, month, day)
        return low, _plus_or_latest(low, timedelta(days=1))
    tz = timezone.utc
    if g["tz"] and not valid_offset(g["tz"]):
        raise ValueError(f"'{text}' has a time zone offset beyond ±14:00")
    if g["tz"] and g["tz"] != "Z":
        sign = 1 if g["tz"][0] == "+" else -1
        hours, minutes = int(g["tz"][1:3]), int(g["tz"][4:6])
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    second = int(g["S"]) if g["S"] else 0
    fraction = g["f"] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    try:
        low = datetime(year, month, day, int(g["H"]), int(g["M"]), second, micro, tzinfo=tz).astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"'{text}' is outside the years 1-9999 in UTC") from None
    if g["S"] is None:
        step = timedelta(minutes=1)
    elif not fraction:
        step = timedelta(seconds=1)
    else:
        step = timedelta(microseconds=10 ** max(0, 6 - (len(fraction) - 1)))
    return low, _plus_or_latest(low, step)


_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def _plus_or_latest(low: datetime, step: timedelta) -> datetime:
    try:
        return low + step
    except OverflowError:
        return _LATEST


def _year_start_or_latest(year: int) -> datetime:
    return _LATEST if year > 9999 else _utc(year, 1, 1)


def _utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=timezone.utc)
