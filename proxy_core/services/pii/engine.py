"""The PII redactor: replaces validated identifiers with numbered placeholders.

Redaction runs before LiteLLM, Langfuse or a log line sees a request, so the provider, the
traces and the logs all receive the same scrubbed text. Placeholders are numbered per request
(``<REDACTED_SSN_1>``, ``<REDACTED_SSN_2>``) so a model can still tell two people apart, and a
value seen twice keeps one placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from .dates import find_dates
from .member_ids import compile_member_id_patterns, find_member_ids
from .rules import (
    PLACEHOLDER,
    PLACEHOLDER_PREFIX,
    PRECEDENCE,
    Finding,
    PiiType,
    find_cards,
    find_emails,
    find_mbis,
    find_npis,
    find_phones,
    find_ssns,
)

_PREFILTER = re.compile(r"[0-9@]")
# System identifiers, not personal ones: W3C traceparents (recorded in trace metadata), UUIDs
# (insertion ids, call ids) and 32-hex trace ids. Their hex runs can look like an MBI or an NPI by
# chance, and redacting them would break the tags and ids that traces are found and joined by.
_SYSTEM_IDS = re.compile(
    r"(?<![0-9A-Za-z])(?:[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})(?![0-9A-Za-z])",
    re.IGNORECASE,
)
_BUILTIN_FINDERS: tuple[Callable[[str], Iterator[Finding]], ...] = (
    find_ssns,
    find_mbis,
    find_npis,
    find_cards,
    find_phones,
    find_dates,
)


class PiiEngineError(Exception):
    """The redactor failed unexpectedly, so the text cannot be shown to be clean.

    Callers turn it into a 500 ``sanitizer_error`` and forward nothing to the provider, the
    traces or the logs. The message names only the failure's type: the original exception is not
    chained because its message could quote the text being scrubbed.
    """


class PlaceholderMemo:
    """Per-request map from identifier to placeholder; lives in memory for one request only.

    It holds raw identifiers, so it refuses to be pickled and its ``repr`` shows only a count:
    it must never be persisted or logged.
    """

    __slots__ = ("_counts", "_placeholders")

    def __init__(self) -> None:
        self._placeholders: dict[tuple[PiiType, str], str] = {}
        self._counts: dict[PiiType, int] = {}

    def placeholder(self, kind: PiiType, key: str) -> str:
        """The placeholder for ``key``, numbering a new value after the others of its type."""
        existing = self._placeholders.get((kind, key))
        if existing is not None:
            return existing
        number = self._counts.get(kind, 0) + 1
        self._counts[kind] = number
        created = f"{PLACEHOLDER_PREFIX}{kind.value}_{number}>"
        self._placeholders[(kind, key)] = created
        return created

    def __len__(self) -> int:
        return len(self._placeholders)

    def __repr__(self) -> str:
        return f"PlaceholderMemo({len(self._placeholders)} values)"

    def __reduce__(self) -> NoReturn:
        raise TypeError("PlaceholderMemo holds raw identifiers and cannot be pickled")


class PiiRedactor:
    """Built once from configuration; ``redact`` is then safe to call from any request."""

    __slots__ = ("_member_patterns",)

    def __init__(self, member_id_patterns: Sequence[str] = ()) -> None:
        """Compile the payer's member-id patterns; an invalid one raises ``ValueError`` now."""
        self._member_patterns = compile_member_id_patterns(member_id_patterns)

    @staticmethod
    def may_contain_pii(text: str) -> bool:
        """False when ``text`` has no digit and no ``@``, so no identifier can be in it.

        Every built-in identifier has a digit or an ``@``, and member ids are numbered, so text
        without either is skipped (configured member-id patterns must need a digit). Escaped JSON
        is covered too: the escape for a digit or an ``@`` (``\\u0040``) itself has digits.
        """
        return _PREFILTER.search(text) is not None

    def redact(self, text: str, memo: PlaceholderMemo) -> str:
        """``text`` with every validated identifier replaced by its placeholder.

        Text with no digit and no ``@`` cannot hold any identifier and is returned as the same
        object without scanning. Running ``redact`` on its own output changes nothing.
        """
        try:
            if not self.may_contain_pii(text):
                return text
            findings = self._scan(text)
            return _substitute(text, findings, memo) if findings else text
        except Exception as exc:
            raise PiiEngineError(f"PII redaction failed: {type(exc).__name__}") from None

    def _scan(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for finder in _BUILTIN_FINDERS:
            found.extend(finder(text))
        if "@" in text:
            found.extend(find_emails(text))
        for pattern in self._member_patterns:
            found.extend(find_member_ids(text, pattern))
        if found and PLACEHOLDER_PREFIX in text:
            found = _outside(found, PLACEHOLDER.finditer(text))
        if found and ("-" in text or len(text) >= 32):
            found = _outside(found, _SYSTEM_IDS.finditer(text))
        return _merge_overlaps(text, found)


def _outside(findings: list[Finding], protected: Iterator[re.Match[str]]) -> list[Finding]:
    """Drop findings that touch a protected span (an existing placeholder, a system id).

    Skipping placeholders is what makes re-redaction a no-op.
    """
    spans = [(match.start(), match.end()) for match in protected]
    if not spans:
        return findings
    return [
        finding for finding in findings if not any(finding.start < end and start < finding.end for start, end in spans)
    ]


def _merge_overlaps(text: str, findings: list[Finding]) -> list[Finding]:
    """Collapse overlapping findings into one span labelled with the most specific type.

    Taking the union rather than dropping the loser means a partial overlap can only redact more,
    never leave the tail of an identifier behind.
    """
    findings.sort(key=lambda finding: (finding.start, -finding.end))
    groups: list[list[Finding]] = []
    group_end = -1
    for finding in findings:
        if finding.start >= group_end:
            groups.append([])
        groups[-1].append(finding)
        group_end = max(group_end, finding.end)
    return [group[0] if len(group) == 1 else _union(text, group) for group in groups]


def _union(text: str, group: list[Finding]) -> Finding:
    start = group[0].start
    end = max(finding.end for finding in group)
    winner = min(group, key=lambda finding: PRECEDENCE[finding.kind])
    if (winner.start, winner.end) == (start, end):
        return winner
    return Finding(start, end, winner.kind, text[start:end])


def _substitute(text: str, findings: list[Finding], memo: PlaceholderMemo) -> str:
    pieces: list[str] = []
    cursor = 0
    for finding in findings:
        pieces.append(text[cursor : finding.start])
        pieces.append(memo.placeholder(finding.kind, finding.key))
        cursor = finding.end
    pieces.append(text[cursor:])
    return "".join(pieces)
