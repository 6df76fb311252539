"""Search value primitives: string normalisation and precision-aware date ranges.

Dates are half-open ranges [low, high) of UTC epoch microseconds: "2025" covers the whole year,
"2025-03-04T10:00Z" one minute (http://hl7.org/fhir/R4/search.html#date). Open-ended Periods use the
sentinels MIN_TIME / MAX_TIME. Values without a timezone are taken as UTC.
"""
from __future__ import annotations

import sys
import unicodedata
from datetime import date, datetime, timedelta, timezone

from ipt_fhir.fhir.dates import DATE_TIME, valid_offset

MIN_TIME = -(2**62)
MAX_TIME = 2**62
# The unbounded ends of a Range in the number and quantity index: the largest doubles, not ±infinity, so
# that every bound is a finite number in both databases and in JSON (pending index rows, _page sort keys).
NUMBER_MIN = -sys.float_info.max
NUMBER_MAX = sys.float_info.max
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_ORD = date(1970, 1, 1).toordinal()
_DAY_US = 86_400_000_000
STRING_INDEX_LENGTH = 255


def normalise(text: str) -> str:
    """Case- and accent-insensitive form: NFKD, combining marks dropped, casefolded, spaces collapsed."""
    if text.isascii():
        out = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text)
        out = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    if "  " in out or "\t" in out or "\n" in out:
        out = " ".join(out.split())
    return out.strip()


def normalise_short(text: str) -> str:
    """normalise(), cut to the length of the indexed (prefix-searchable) string columns."""
    return normalise(text)[:STRING_INDEX_LENGTH]


def to_micros(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // timedelta(microseconds=1)


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def date_range(text: str) -> tuple[int, int] | None:
    """[low, high) of a FHIR date, dateTime or instant (also minute precision, as search allows); None for
    anything the R4 grammar does not take: an hour without minutes, hour 24, an offset beyond ±14:00."""
    m = DATE_TIME.fullmatch(text.strip()) if isinstance(text, str) else None  # minutes with every hour (search.html#date)
    if not m:
        return None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        year = int(y)
        if mo is None:
            lo = date(year, 1, 1).toordinal()
            hi = date(year + 1, 1, 1).toordinal() if year < 9999 else lo + 366
            return (lo - _EPOCH_ORD) * _DAY_US, (hi - _EPOCH_ORD) * _DAY_US
        month = int(mo)
        if d is None:
            lo = date(year, month, 1).toordinal()
            nxt = date(year + (month == 12), month % 12 + 1, 1).toordinal() if not (year == 9999 and month == 12) else lo + 31
            return (lo - _EPOCH_ORD) * _DAY_US, (nxt - _EPOCH_ORD) * _DAY_US
        day_ord = date(year, month, int(d)).toordinal()
        base = (day_ord - _EPOCH_ORD) * _DAY_US
        if hh is None:
            return base, base + _DAY_US
        h = int(hh)
        if h > 23 or int(mi) > 59 or (ss is not None and int(ss) > 60) or (tz and not valid_offset(tz)):
            return None
        us = base + h * 3_600_000_000 + int(mi) * 60_000_000
        width = 60_000_000
        if ss is not None:
            # A leap second (datatypes.html: dateTime and instant allow seconds 60) has no place on this
            # scale, which like UTC epoch time counts no leap seconds: taken as a 60th second it would
            # be midnight, the next day's. It is the last second of its minute, hour and day, so it is
            # indexed (and searched) as second 59, the one it follows (as java.time parses it): a search
            # for its day, hour or minute finds it, and it sorts before the next minute.
            us += min(int(ss), 59) * 1_000_000
            width = 1_000_000
        if frac:
            digits = frac[1:7]
            us += int(digits.ljust(6, "0"))
            width = 10 ** (6 - len(digits))
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            us -= sign * (int(tz[1:3]) * 3_600_000_000 + int(tz[4:6]) * 60_000_000)
        return us, us + width
    except ValueError:
        return None
