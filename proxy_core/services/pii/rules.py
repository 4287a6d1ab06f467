"""Patterns and validators for the identifiers a healthcare payer must never send upstream.

Each ``find_*`` function scans a text and yields only *validated* findings: a checksum, a calendar
or a range check runs on every regex hit, so invoice numbers, timestamps and version strings are
left alone while real identifiers are caught.

Token edges follow one symmetric rule: a finding may not split a run of ASCII digits or a run of
ASCII letters, and any other neighbour (space, punctuation, ``_``, non-ASCII) is a boundary, so
``NPI1234567893`` and ``id_234-56-7890`` are caught. The symmetry is what makes redaction
idempotent: a hit blocked by a neighbouring character can never be unblocked by replacing that
neighbour with a placeholder, because the neighbour's own match would have been blocked by the hit's
first character in the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum


class PiiType(StrEnum):
    """Placeholder type names; declaration order is the precedence when two findings overlap."""

    EMAIL = "EMAIL"
    MBI = "MBI"
    SSN = "SSN"
    CARD = "CARD"
    NPI = "NPI"
    MEMBER_ID = "MEMBER_ID"
    DATE = "DATE"
    PHONE = "PHONE"


PRECEDENCE: dict[PiiType, int] = {kind: rank for rank, kind in enumerate(PiiType)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One validated identifier: its span in the text and the canonical value that numbers it."""

    start: int
    end: int
    kind: PiiType
    key: str


PLACEHOLDER_PREFIX = "<REDACTED_"
# Tight enough that a forged placeholder cannot shelter an identifier: known types, <= 6 digits.
PLACEHOLDER = re.compile(rf"{PLACEHOLDER_PREFIX}(?:{'|'.join(PiiType)})_[1-9][0-9]{{0,5}}>")


def is_placeholder_at(text: str, index: int) -> bool:
    """True when a redaction placeholder starts at ``index``."""
    return index >= 0 and PLACEHOLDER.match(text, index) is not None


# Put right after a pattern's first digit: that digit does not continue a longer run of digits.
# Patterns start with the digit itself (not a look-behind) so the regex engine can skip straight
# to candidate digits, which makes scanning digit-poor prose several times faster.
_NEW_RUN = "(?<![0-9]{2})"

_DIGITS = frozenset("0123456789")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _digits_only(value: str) -> str:
    return "".join(ch for ch in value if ch in _DIGITS)


def _validated(
    pattern: re.Pattern[str], text: str, kind: PiiType, key_of: Callable[[re.Match[str]], str | None]
) -> Iterator[Finding]:
    """Findings for the hits of ``pattern`` whose ``key_of`` (validator and canonical value) is set.

    A rejected hit is retried one character later instead of being consumed, so it cannot hide an
    overlapping identifier: in ``0147/04/17/1962`` the year 0147 is rejected and the date
    04/17/1962 is still found.
    """
    match = pattern.search(text)
    while match is not None:
        key = key_of(match)
        if key is None:
            match = pattern.search(text, match.start() + 1)
            continue
        yield Finding(match.start(), match.end(), kind, key)
        match = pattern.search(text, match.end())


# --- checksums ------------------------------------------------------------------------------------

_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_valid(digits: str) -> bool:
    """True when the Luhn (mod 10) check digit at the end of ``digits`` is right."""
    odd = sum(ord(ch) - 48 for ch in digits[-1::-2])
    even = sum(_DOUBLED[ord(ch) - 48] for ch in digits[-2::-2])
    return (odd + even) % 10 == 0


# --- SSN ------------------------------------------------------------------------------------------

_SSN_GROUPED = re.compile(rf"([0-9]{_NEW_RUN}[0-9]{{2}})([- ])([0-9]{{2}})\2([0-9]{{4}})(?![0-9])", re.ASCII)
_SSN_BARE = re.compile(rf"([0-9]{_NEW_RUN}[0-9]{{2}})([0-9]{{2}})([0-9]{{4}})(?![0-9])", re.ASCII)
_SSN_CONTEXT = re.compile(
    r"(?<![A-Za-z])(?:(?:ssns?|social[\s-]*security|ss\s?(?:no|num(?:ber)?))(?![A-Za-z])|ss\s?\#)",
    re.ASCII | re.IGNORECASE,
)
SSN_CONTEXT_WINDOW = 48


def is_valid_ssn(area: str, group: str, serial: str) -> bool:
    """SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    area_number = int(area)
    return area_number not in (0, 666) and area_number < 900 and group != "00" and serial != "0000"


def _digit_free_reach(text: str, index: int, step: int) -> int:
    """Walk from ``index`` in direction ``step`` until a digit or the context window limit."""
    limit = max(0, index - SSN_CONTEXT_WINDOW) if step < 0 else min(len(text), index + SSN_CONTEXT_WINDOW)
    pos = index
    while pos != limit:
        neighbour = text[pos - 1] if step < 0 else text[pos]
        if neighbour in _DIGITS:
            break
        pos += step
    return pos


def _has_context_word(text: str, start: int, end: int) -> bool:
    """An SSN word in ``text[start:end]``, not counting the type name inside a placeholder."""
    for match in _SSN_CONTEXT.finditer(text, start, end):
        if not is_placeholder_at(text, match.start() - len(PLACEHOLDER_PREFIX)):
            return True
    return False


def has_ssn_context(text: str, start: int, end: int) -> bool:
    """A bare nine-digit number counts as an SSN only with an SSN word close by.

    The words must be reachable without crossing another digit, so the decision depends only on
    digit-free text, which placeholders (they contain a digit) never shorten or lengthen.
    """
    if _has_context_word(text, _digit_free_reach(text, start, -1), start):
        return True
    return _has_context_word(text, end, _digit_free_reach(text, end, 1))


def _grouped_ssn_key(match: re.Match[str]) -> str | None:
    area, _, group, serial = match.groups()
    return area + group + serial if is_valid_ssn(area, group, serial) else None


def _bare_ssn_key(match: re.Match[str]) -> str | None:
    if not is_valid_ssn(*match.groups()):
        return None
    return match.group() if has_ssn_context(match.string, match.start(), match.end()) else None


def find_ssns(text: str) -> Iterator[Finding]:
    """``123-45-6789`` / ``123 45 6789`` anywhere; bare ``123456789`` only next to SSN words."""
    yield from _validated(_SSN_GROUPED, text, PiiType.SSN, _grouped_ssn_key)
    yield from _validated(_SSN_BARE, text, PiiType.SSN, _bare_ssn_key)


# --- Medicare Beneficiary Identifier -------------------------------------------------------------

_MBI_LETTER = "AC-HJKMNP-RT-Y"  # A-Z without S, L, O, I, B, Z
_MBI = re.compile(
    rf"[1-9]{_NEW_RUN}[{_MBI_LETTER}][{_MBI_LETTER}0-9][0-9](-?)"
    rf"[{_MBI_LETTER}][{_MBI_LETTER}0-9][0-9]\1"
    rf"[{_MBI_LETTER}][{_MBI_LETTER}][0-9]{{2}}(?![0-9])",
    re.ASCII | re.IGNORECASE,
)


def find_mbis(text: str) -> Iterator[Finding]:
    """CMS MBI, ``1EG4TE5MK73`` or ``1EG4-TE5-MK73``; the position classes are the validation."""
    for match in _MBI.finditer(text):
        yield Finding(match.start(), match.end(), PiiType.MBI, match.group().replace("-", "").upper())


# --- NPI ------------------------------------------------------------------------------------------

_NPI = re.compile(rf"[12]{_NEW_RUN}[0-9]{{9}}(?![0-9])", re.ASCII)


def is_valid_npi(digits: str) -> bool:
    """NPI check digit: Luhn over the card-issuer prefix 80840 followed by the ten digits."""
    return len(digits) == 10 and luhn_valid("80840" + digits)


def _npi_key(match: re.Match[str]) -> str | None:
    return match.group() if is_valid_npi(match.group()) else None


def find_npis(text: str) -> Iterator[Finding]:
    """Ten digits starting with 1 or 2 whose NPI check digit is right."""
    yield from _validated(_NPI, text, PiiType.NPI, _npi_key)


# --- payment cards --------------------------------------------------------------------------------

_CARD = re.compile(rf"[0-9]{_NEW_RUN}(?:[0-9]{{12,18}}|[0-9]{{3}}(?:[ -][0-9]{{1,6}})+)(?![0-9])", re.ASCII)
_CARD_GROUP = re.compile(r"[0-9]+")
_MAX_CARD_GROUPS = 5  # 4-4-4-4-3 is the longest printed layout


def is_valid_card(digits: str) -> bool:
    """13-19 digits with a correct Luhn check digit."""
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _card_window_end(groups: list[re.Match[str]], first: int) -> int | None:
    """Index of the last group of the longest valid card starting at group ``first``."""
    if len(groups[first].group()) != 4:
        return None
    for last in range(min(len(groups), first + _MAX_CARD_GROUPS) - 1, first, -1):
        if is_valid_card("".join(group.group() for group in groups[first : last + 1])):
            return last
    return None


def _card_windows(groups: list[re.Match[str]]) -> Iterator[tuple[int, int]]:
    """Valid cards inside a run of digit groups, scanning left to right.

    A run can hold a card next to a year, an amount or another number (``2025 4111 1111 1111
    1111``), so every window of up to five groups that starts with a four-digit group is tried.
    """
    first = 0
    while first < len(groups):
        last = _card_window_end(groups, first)
        if last is None:
            first += 1
            continue
        yield groups[first].start(), groups[last].end()
        first = last + 1


def find_cards(text: str) -> Iterator[Finding]:
    """Luhn-valid card numbers, contiguous or grouped with single spaces or dashes."""
    for match in _CARD.finditer(text):
        if match.group().isdigit():
            if luhn_valid(match.group()):
                yield Finding(match.start(), match.end(), PiiType.CARD, match.group())
            continue
        groups = list(_CARD_GROUP.finditer(text, match.start(), match.end()))
        for start, end in _card_windows(groups):
            yield Finding(start, end, PiiType.CARD, _digits_only(text[start:end]))


# --- NANP phone numbers ---------------------------------------------------------------------------

_PHONE = re.compile(
    r"""
    (?=[+(0-9])  # one cheap character test before trying the alternatives at every position
    (?:
        \+1[ .-]?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}
      | (?:(?<![0-9])1[ .-]?)?\([2-9][0-9]{2}\)[ .-]?[2-9][0-9]{2}[ .-]?[0-9]{4}
      | (?:(?<![0-9])1[ .-])?(?<![0-9])[2-9][0-9]{2}([ .-])[2-9][0-9]{2}\1[0-9]{4}
    )
    (?:[ ]?(?:x|ext\.?)[ ]?[0-9]{1,6})?
    (?![0-9])
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)


def find_phones(text: str) -> Iterator[Finding]:
    """US/Canada numbers with separators, parentheses or ``+1``; NPA and exchange start 2-9.

    Bare ten-digit runs are left to the NPI rule: without separators a phone number cannot be told
    apart from other ten-digit identifiers.
    """
    for match in _PHONE.finditer(text):
        digits = _digits_only(match.group())
        key = digits[1:] if digits.startswith("1") else digits
        yield Finding(match.start(), match.end(), PiiType.PHONE, key)


# --- e-mail addresses -----------------------------------------------------------------------------

_EMAIL_LOCAL_CHARS = _WORD_CHARS | frozenset(".%+-")
_EMAIL_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z])", re.ASCII)


def _email_local_start(text: str, at: int) -> int:
    """Start of the local part ending at ``at``; equals ``at`` when there is none.

    Walks back over local-part characters instead of using a regex, so a long run of word
    characters before each ``@`` costs linear rather than quadratic time.
    """
    start = at
    while start > 0 and text[start - 1] in _EMAIL_LOCAL_CHARS:
        start -= 1
    while start < at and text[start] not in _WORD_CHARS:
        start += 1
    return start


def find_emails(text: str) -> Iterator[Finding]:
    """``local@domain.tld`` with a 2-24 letter top-level domain."""
    at = text.find("@")
    while at != -1:
        start = _email_local_start(text, at)
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if start < at and domain is not None:
            yield Finding(start, domain.end(), PiiType.EMAIL, text[start : domain.end()].lower())
        at = text.find("@", at + 1)
