"""Member ids: payer-specific patterns from configuration, matched as whole tokens.

Every payer numbers its members differently, so these come from each project's configuration;
they are compiled once at start-up (an invalid pattern fails there) and must need a digit, because
text with no digit and no ``@`` is never scanned.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .rules import Finding, PiiType

# The token-edge rule of ``rules`` (its module docstring), for patterns whose first and last characters
# are not known in advance.
_TOKEN_START = r"(?:(?<![0-9])(?=[0-9])|(?<![A-Za-z])(?=[A-Za-z])|(?=[^0-9A-Za-z]))"
_TOKEN_END = r"(?:(?<=[0-9])(?![0-9])|(?<=[A-Za-z])(?![A-Za-z])|(?<=[^0-9A-Za-z]))"
_LEADING_FLAGS = re.compile(r"\A\(\?([aiLmsux]+)\)")


def _whole_token(pattern: str) -> str:
    """Wrap ``pattern`` so it cannot split a run of digits or letters; leading global flags stay first.

    In verbose mode the closing parenthesis goes on a new line, out of reach of a ``#`` comment.
    """
    flags = _LEADING_FLAGS.match(pattern)
    prefix = flags.group() if flags else ""
    body = pattern[len(prefix) :]
    closing = "\n)" if flags and "x" in flags.group(1) else ")"
    return f"{prefix}{_TOKEN_START}(?:{body}{closing}{_TOKEN_END}"


@dataclass(frozen=True, slots=True)
class MemberIdPattern:
    """A configured member-id regex: ``scan`` finds candidates fast, ``token`` checks the edges.

    Wrapping the pattern in the token-edge test costs a lot at every position of the text, so the
    bare pattern locates candidates and the wrapped one is only tried where a candidate starts.
    """

    scan: re.Pattern[str]
    token: re.Pattern[str]


def compile_member_id_pattern(pattern: str) -> MemberIdPattern:
    """Compile one payer's member-id regex as a whole-token, case-insensitive pattern.

    Raises ``ValueError`` naming the pattern when it does not compile or matches the empty string,
    so a bad configuration is reported at start-up rather than on the first request.
    """
    if not isinstance(pattern, str):
        raise ValueError(f"member id pattern must be a string, not {type(pattern).__name__}")
    try:
        scan = re.compile(pattern, re.ASCII | re.IGNORECASE)
        if scan.fullmatch(""):
            raise ValueError(f"member id pattern {pattern!r} matches the empty string")
        return MemberIdPattern(scan, re.compile(_whole_token(pattern), re.ASCII | re.IGNORECASE))
    except re.error as exc:
        raise ValueError(f"invalid member id pattern {pattern!r}: {exc}") from exc


def compile_member_id_patterns(patterns: Sequence[str]) -> tuple[MemberIdPattern, ...]:
    """Compile every configured member-id pattern once."""
    if isinstance(patterns, str):
        raise ValueError("member id patterns must be a sequence of strings, not one string")
    return tuple(compile_member_id_pattern(pattern) for pattern in patterns)


def find_member_ids(text: str, pattern: MemberIdPattern) -> Iterator[Finding]:
    """Non-empty whole-token hits of one configured member-id pattern."""
    candidate = pattern.scan.search(text)
    while candidate is not None:
        match = pattern.token.match(text, candidate.start())
        if match is None or match.end() == match.start():
            candidate = pattern.scan.search(text, candidate.start() + 1)
            continue
        key = "".join(ch for ch in match.group().upper() if ch not in " -")
        yield Finding(match.start(), match.end(), PiiType.MEMBER_ID, key)
        candidate = pattern.scan.search(text, match.end())
