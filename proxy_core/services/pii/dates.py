"""Dates of birth and of service: numeric and written-out forms, only real calendar dates.

HIPAA's Safe Harbor rule treats every element of a date tied to a person (except the year) as an
identifier, so any full date is redacted; impossible dates (13/45/2020, Feb 30) are left alone.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator

from .rules import _NEW_RUN, Finding, PiiType, _validated

_MONTH_NAMES = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_ORDINAL = r"(?:st|nd|rd|th)?"
_NUMERIC_DATE = re.compile(
    rf"""
    [0-9]{_NEW_RUN}
    (?:
        [0-9]?(?P<sep>[/-])[0-9]{{1,2}}(?P=sep)(?:[0-9]{{4}}|[0-9]{{2}})  # 04/17/1962, 4-17-62
      | [0-9]?\.[0-9]{{1,2}}\.[0-9]{{4}}                                 # 04.17.1962
      | [0-9]{{3}}(?P<isep>[/.-])[0-9]{{1,2}}(?P=isep)[0-9]{{1,2}}        # 1962-04-17
    )
    (?![0-9])
    """,
    re.ASCII | re.VERBOSE,
)
_DATE_PARTS = re.compile(r"[0-9]+")
_MONTH_FIRST_DATE = re.compile(
    rf"""
    (?=[adfjmnos])(?<![A-Za-z])  # a cheap first-letter test before the month alternatives
    (?P<month>{_MONTH_NAMES})\.?[ ]{{1,2}}(?P<day>[0-9]{{1,2}}){_ORDINAL},?[ ]{{1,2}}(?P<year>[0-9]{{4}})(?![0-9])
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)
_DAY_FIRST_DATE = re.compile(
    rf"""
    (?P<day>[0-9]{_NEW_RUN}[0-9]?){_ORDINAL}[ ]{{1,2}}(?:of[ ])?
    (?P<month>{_MONTH_NAMES})\.?,?[ ]{{1,2}}(?P<year>[0-9]{{4}})(?![0-9])
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH_NUMBERS = {name: number for number, name in enumerate(_MONTHS, start=1)}
MIN_YEAR, MAX_YEAR = 1800, 2199


def calendar_date(year: int, month: int, day: int) -> datetime.date | None:
    """The date if it exists on the calendar (no 13/45, no Feb 30) and its year is plausible."""
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return datetime.date(year, month, day)
    except ValueError:
        return None


def _two_digit_year(year: int) -> int:
    """``62`` is 1962 and ``24`` is 2024: a two-digit year never lands in the future."""
    this_year = datetime.date.today().year
    return 2000 + year if 2000 + year <= this_year else 1900 + year


def _numeric_date(text: str) -> datetime.date | None:
    """``MM/DD/YY[YY]`` (falling back to ``DD/MM`` when the first number cannot be a month) or ISO."""
    first, second, third = _DATE_PARTS.findall(text)
    if len(first) == 4:
        return calendar_date(int(first), int(second), int(third))
    year = int(third) if len(third) == 4 else _two_digit_year(int(third))
    for month, day in ((int(first), int(second)), (int(second), int(first))):
        found = calendar_date(year, month, day)
        if found is not None:
            return found
    return None


def _named_date(match: re.Match[str]) -> datetime.date | None:
    month = _MONTH_NUMBERS[match["month"][:3].lower()]
    return calendar_date(int(match["year"]), month, int(match["day"]))


def _numeric_date_key(match: re.Match[str]) -> str | None:
    found = _numeric_date(match.group())
    return found.isoformat() if found else None


def _named_date_key(match: re.Match[str]) -> str | None:
    found = _named_date(match)
    return found.isoformat() if found else None


def find_dates(text: str) -> Iterator[Finding]:
    """Full dates (birth, service, admission) in US, ISO and written-month forms."""
    yield from _validated(_NUMERIC_DATE, text, PiiType.DATE, _numeric_date_key)
    yield from _validated(_MONTH_FIRST_DATE, text, PiiType.DATE, _named_date_key)
    yield from _validated(_DAY_FIRST_DATE, text, PiiType.DATE, _named_date_key)
