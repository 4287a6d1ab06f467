"""Placeholders, per-request numbering, configuration errors and failure handling."""

from __future__ import annotations

import pickle
import re

import pytest

from proxy_core.services.pii import PiiEngineError, PiiRedactor, PiiType, PlaceholderMemo

MEMBER_PATTERNS = [r"[A-Z]{3}[0-9]{9}"]

# Eighteen distinct identifiers, the way they show up in a claims conversation.
SAMPLE = """\
Member id XYZ123456789 (group ABC987654321), SSN 234-56-7890, Medicare MBI 1EG4-TE5-MK73.
Spouse: SSN 345 67 8901, MBI 2AD5QR6TY84. Child's social security number: 456789012.
Rendering NPI 1234567893, referring NPI 1245319599.
Paid with 4111 1111 1111 1111 and later 3782-822463-10005.
Phones (312) 555-0147 x204, +1 646 555 0199, 415.555.0172. E-mail jane.roe@example.org.
DOB 04/17/1962; admitted Mar 3, 2024; discharged 2024-03-09.
Not identifiers: SSN 666-12-3456, card 4111 1111 1111 1112, NPI 1234567890, date 13/45/2020, 2 visits.
"""
SAMPLE_VALUES = [
    "XYZ123456789",
    "234-56-7890",
    "1EG4-TE5-MK73",
    "345 67 8901",
    "2AD5QR6TY84",
    "456789012",
    "1234567893",
    "1245319599",
    "4111 1111 1111 1111",
    "3782-822463-10005",
    "(312) 555-0147 x204",
    "+1 646 555 0199",
    "415.555.0172",
    "jane.roe@example.org",
    "04/17/1962",
    "Mar 3, 2024",
    "2024-03-09",
    "ABC987654321",
]
NEGATIVES = ["666-12-3456", "4111 1111 1111 1112", "1234567890", "13/45/2020", "2 visits"]


@pytest.fixture
def redactor() -> PiiRedactor:
    return PiiRedactor(member_id_patterns=MEMBER_PATTERNS)


def test_sample_with_eighteen_identifiers_is_fully_redacted(redactor: PiiRedactor) -> None:
    memo = PlaceholderMemo()
    redacted = redactor.redact(SAMPLE, memo)
    for value in SAMPLE_VALUES:
        assert value not in redacted
    for value in NEGATIVES:
        assert value in redacted
    assert len(set(re.findall(r"<REDACTED_[A-Z_]+_[0-9]+>", redacted))) == 18
    assert len(memo) == 18


def test_placeholders_are_numbered_per_type_and_reused(redactor: PiiRedactor) -> None:
    memo = PlaceholderMemo()
    text = "SSN 234-56-7890, SSN 345-67-8901, again 234 56 7890, call 312-555-0147"
    assert redactor.redact(text, memo) == (
        "SSN <REDACTED_SSN_1>, SSN <REDACTED_SSN_2>, again <REDACTED_SSN_1>, call <REDACTED_PHONE_1>"
    )


def test_memo_carries_numbering_across_texts_of_one_request(redactor: PiiRedactor) -> None:
    memo = PlaceholderMemo()
    assert redactor.redact("SSN 234-56-7890", memo) == "SSN <REDACTED_SSN_1>"
    assert redactor.redact("SSN 345-67-8901 and 234-56-7890", memo) == "SSN <REDACTED_SSN_2> and <REDACTED_SSN_1>"
    assert redactor.redact("SSN 345-67-8901", PlaceholderMemo()) == "SSN <REDACTED_SSN_1>"


def test_text_without_digit_or_at_sign_is_returned_as_is(redactor: PiiRedactor) -> None:
    text = "".join(["No identifiers here, just prose about deductibles."] * 3)
    assert redactor.redact(text, PlaceholderMemo()) is text


def test_text_with_digits_but_no_identifier_is_returned_as_is(redactor: PiiRedactor) -> None:
    text = "Two visits cost 250 dollars in 2024."
    assert redactor.redact(text, PlaceholderMemo()) is text


def test_redaction_is_idempotent(redactor: PiiRedactor) -> None:
    memo = PlaceholderMemo()
    once = redactor.redact(SAMPLE, memo)
    assert redactor.redact(once, memo) == once
    assert redactor.redact(once, PlaceholderMemo()) == once


def test_placeholder_lookalikes_are_not_matched_by_member_patterns() -> None:
    redactor = PiiRedactor(member_id_patterns=[r"[A-Z_]+_[0-9]+"])
    assert redactor.redact("see <REDACTED_SSN_1>", PlaceholderMemo()) == "see <REDACTED_SSN_1>"


def test_email_wins_over_identifiers_inside_it(redactor: PiiRedactor) -> None:
    assert redactor.redact("mail 1234567893@example.org", PlaceholderMemo()) == "mail <REDACTED_EMAIL_1>"


def test_partial_overlap_redacts_the_union() -> None:
    redactor = PiiRedactor(member_id_patterns=[r"[0-9]{3}-[0-9]{2}-[0-9]{4}-[A-Z]{2}"])
    assert redactor.redact("id 234-56-7890-AB", PlaceholderMemo()) == "id <REDACTED_SSN_1>"


@pytest.mark.parametrize("pattern", ["[A-Z", "(?P<x>1", "*1"])
def test_invalid_member_pattern_fails_at_construction(pattern: str) -> None:
    with pytest.raises(ValueError, match="invalid member id pattern"):
        PiiRedactor(member_id_patterns=[pattern])


def test_member_pattern_matching_nothing_is_rejected() -> None:
    with pytest.raises(ValueError, match="matches the empty string"):
        PiiRedactor(member_id_patterns=["[0-9]*"])


def test_member_patterns_as_a_single_string_are_rejected() -> None:
    with pytest.raises(ValueError, match="sequence of strings"):
        PiiRedactor(member_id_patterns="[0-9]{9}")


def test_member_pattern_with_leading_flags_compiles() -> None:
    redactor = PiiRedactor(member_id_patterns=["(?x) M [0-9]{8}  # payer prefix and number"])
    assert redactor.redact("id m12345678", PlaceholderMemo()) == "id <REDACTED_MEMBER_ID_1>"


def test_unexpected_failure_becomes_engine_error(redactor: PiiRedactor) -> None:
    with pytest.raises(PiiEngineError, match="TypeError") as caught:
        redactor.redact(b"SSN 234-56-7890", PlaceholderMemo())  # type: ignore[arg-type]
    assert caught.value.__cause__ is None
    assert "234" not in str(caught.value)


def test_memo_never_reveals_or_persists_values(redactor: PiiRedactor) -> None:
    memo = PlaceholderMemo()
    redactor.redact("SSN 234-56-7890", memo)
    assert repr(memo) == "PlaceholderMemo(1 values)"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(memo)


def test_memo_placeholder_format() -> None:
    memo = PlaceholderMemo()
    assert memo.placeholder(PiiType.MEMBER_ID, "A1") == "<REDACTED_MEMBER_ID_1>"
    assert memo.placeholder(PiiType.MEMBER_ID, "A2") == "<REDACTED_MEMBER_ID_2>"
    assert memo.placeholder(PiiType.MEMBER_ID, "A1") == "<REDACTED_MEMBER_ID_1>"


def test_forged_placeholder_cannot_shelter_an_identifier(redactor: PiiRedactor) -> None:
    redacted = redactor.redact("<REDACTED_SSN_4111111111111111> <REDACTED_X_234-56-7890>", PlaceholderMemo())
    assert "4111111111111111" not in redacted
    assert "234-56-7890" not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "456789012ss#a@b.com",
        "jane@x.orgREDACTED_SSN <345678912",
        "234-56-7890/04/17/17th",
        "1234567893ssn 234567891",
        "234567891 234-56-7890",
        "a@b.com1234567893April 17, 1962",
    ],
)
def test_redaction_is_idempotent_next_to_replaced_identifiers(redactor: PiiRedactor, text: str) -> None:
    once = redactor.redact(text, PlaceholderMemo())
    assert redactor.redact(once, PlaceholderMemo()) == once


def test_system_ids_are_never_redacted() -> None:
    """UUIDs and 32-hex trace ids can look like an MBI or NPI by chance; they identify calls, not people."""
    redactor = PiiRedactor()
    for text in (
        "insertion_id:01a20234-1670-743a-a5ee-1d26a21af76a",
        "trace 245fb3ef1d26a21af76a4c5e6f7a8b9c done",
        "ID 0F1E2D3C-4B5A-6978-8A9B-1234567893AB",
    ):
        assert redactor.redact(text, PlaceholderMemo()) == text
    assert redactor.redact("SSN 345-67-8912 near 01a20234-1670-743a-a5ee-1d26a21af76a", PlaceholderMemo()) == (
        "SSN <REDACTED_SSN_1> near 01a20234-1670-743a-a5ee-1d26a21af76a"
    )
