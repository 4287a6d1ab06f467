"""Throughput of chat-body PII redaction on one core.

Run ``python bench/pii_bench.py``. Two eight-message bodies are redacted repeatedly: a PII-dense
one (~13 KiB, 18 identifiers among ordinary numbers) and a clean one (~18 KiB of prose without
digits or ``@``). Each body gets five timed runs of about 0.4 s; the table shows the median.
Targets: under 5 ms per dense request and under 0.5 ms per clean one.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUNS = 5
RUN_SECONDS = 0.4
TARGET_MS = {"PII-dense": 5.0, "clean": 0.5}

_PII_SENTENCES = (
    "Member SSN 234-56-7890 called about claim 55012 for $1,284.50 on 3 lines.",
    "Her Medicare number is 1EG4-TE5-MK73 and the referring NPI is 1234567893.",
    "She paid 4 copays with card 4111 1111 1111 1111, then switched to 3782-822463-10005.",
    "Reach her at (312) 555-0147 x204 or 312.555.0188, or mail jane.doe@example.org.",
    "Date of birth 04/17/1962; service dates 2024-03-09 and March 11, 2024.",
    "Her husband's SSN is 345 67 8901, his MBI 2AD5QR6TY84, member id XYZ123456789.",
    "Previous card ending 4012888888881881 was replaced; callback +1 646 555 0199.",
    "Their daughter was born 17 April 1998; emergency contact 1-415-555-0172.",
)
_FILLER = (
    "The plan covered 80 percent of the 2 visits after the 250 dollar deductible, and the remaining 20 percent "
    "went to coinsurance under tier 3 of the 2024 formulary. The adjuster noted 14 pages of records, 6 prior "
    "authorisations and a 30 day appeal window, and asked the agent to summarise the 5 open items. "
)
_CLEAN = (
    "The member asked why the specialist visit was processed as out of network when the directory listed the "
    "clinic as a participating provider. The agent explained how the network status is checked on the date "
    "of service, described the appeal process, and offered to open a review with the provider relations team. "
    "The member also wanted to know whether the deductible resets with the plan year or the calendar year, "
    "and how coinsurance is applied after the deductible is met. "
)


def _message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": text}


def dense_body() -> dict[str, Any]:
    """Eight messages, 18 identifiers spread among filler text full of harmless numbers."""
    messages = [_message("system", "You are a claims assistant. " + _FILLER * 8)]
    for index, sentence in enumerate(_PII_SENTENCES):
        role = "user" if index % 2 == 0 else "assistant"
        messages.append(_message(role, _FILLER * 2 + sentence + " " + _FILLER * 2))
    return {"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2, "user": "agent-desk"}


def clean_body() -> dict[str, Any]:
    """Eight messages of prose with no digit and no ``@``."""
    messages = [_message("system", "You are a claims assistant. " + _CLEAN * 3)]
    for index in range(7):
        messages.append(_message("user" if index % 2 == 0 else "assistant", _CLEAN * 5))
    return {"model": "gpt-4o-mini", "messages": messages, "temperature": 0.2}


def _time_run(call: Callable[[], object]) -> float:
    """Seconds per call, averaged over as many calls as fit in ``RUN_SECONDS``."""
    calls = 0
    started = time.perf_counter()
    deadline = started + RUN_SECONDS
    while True:
        call()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            return (now - started) / calls


def measure(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """Median seconds per request over ``RUNS`` runs, with the body's size and identifier count."""
    from proxy_core.services.pii import PiiRedactor, PlaceholderMemo, redact_chat_body

    redactor = PiiRedactor(member_id_patterns=[r"[A-Z]{3}[0-9]{9}"])
    memo = PlaceholderMemo()
    redact_chat_body(body, redactor, memo)
    size = len(json.dumps(body).encode())
    seconds = statistics.median(
        _time_run(lambda: redact_chat_body(body, redactor, PlaceholderMemo())) for _ in range(RUNS)
    )
    return {"name": name, "bytes": size, "identifiers": len(memo), "seconds": seconds}


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| body | size (KiB) | identifiers | ms / request | MB/s | target | met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        ms = row["seconds"] * 1000
        target = TARGET_MS[row["name"]]
        lines.append(
            f"| {row['name']} | {row['bytes'] / 1024:.1f} | {row['identifiers']} | {ms:.3f} "
            f"| {row['bytes'] / row['seconds'] / 1e6:.1f} | < {target} ms | {'yes' if ms < target else 'no'} |"
        )
    return "\n".join(lines)


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    rows = [measure("PII-dense", dense_body()), measure("clean", clean_body())]
    print(render(rows))
    return 0 if all(row["seconds"] * 1000 < TARGET_MS[row["name"]] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
