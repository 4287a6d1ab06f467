"""Positive and negative cases for every identifier rule, checked through the redactor."""

from __future__ import annotations

import pytest

from proxy_core.services.pii import PiiRedactor, PlaceholderMemo
from proxy_core.services.pii.rules import is_valid_npi, is_valid_ssn, luhn_valid

REDACTOR = PiiRedactor(member_id_patterns=[r"[A-Z]{3}[0-9]{9}", r"M[0-9]{8}-[0-9]{2}"])


def redact(text: str) -> str:
    return REDACTOR.redact(text, PlaceholderMemo())


def assert_redacted(text: str, value: str, kind: str) -> None:
    redacted = redact(text)
    assert value not in redacted
    assert f"<REDACTED_{kind}_1>" in redacted


def assert_untouched(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("SSN 234-56-7890 on file", "234-56-7890"),
        ("ssn: 345 67 8901.", "345 67 8901"),
        ("(772-34-1098)", "772-34-1098"),
        ("SSN 456789012", "456789012"),
        ("social security number is 456789012", "456789012"),
        ("SS# 456789012", "456789012"),
        ("456789012 is her SSN", "456789012"),
    ],
)
def test_ssn_positive(text: str, value: str) -> None:
    assert_redacted(text, value, "SSN")


@pytest.mark.parametrize(
    "text",
    [
        "SSN 000-12-3456",
        "SSN 666-12-3456",
        "SSN 900-12-3456",
        "SSN 987-65-4321",
        "SSN 234-00-5678",
        "SSN 234-56-0000",
        "SSN 234-56 7890",
        "order 456789012 shipped",
        "SSN on file; order 7 then 456789012",
        "1234-56-7890",
        "234-56-78901",
    ],
)
def test_ssn_negative(text: str) -> None:
    assert_untouched(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NPI1234567893", "NPI<REDACTED_NPI_1>"),
        ("member_ssn_234-56-7890", "member_ssn_<REDACTED_SSN_1>"),
        ("SSN#456789012", "SSN#<REDACTED_SSN_1>"),
        ("mbi=1EG4TE5MK73;", "mbi=<REDACTED_MBI_1>;"),
        ("tel:312-555-0147x9", "tel:<REDACTED_PHONE_1>"),
        ("DOB:04/17/1962", "DOB:<REDACTED_DATE_1>"),
    ],
)
def test_identifiers_glued_to_letters_or_underscores(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("area", "group", "serial", "valid"),
    [
        ("234", "56", "7890", True),
        ("899", "99", "9999", True),
        ("000", "56", "7890", False),
        ("666", "56", "7890", False),
        ("900", "56", "7890", False),
        ("999", "56", "7890", False),
        ("234", "00", "7890", False),
        ("234", "56", "0000", False),
    ],
)
def test_ssn_validator(area: str, group: str, serial: str, valid: bool) -> None:
    assert is_valid_ssn(area, group, serial) is valid


@pytest.mark.parametrize("value", ["1EG4-TE5-MK73", "1EG4TE5MK73", "1eg4te5mk73", "2AD5QR6TY84", "9XX9-XX9-XX99"])
def test_mbi_positive(value: str) -> None:
    assert_redacted(f"Medicare id {value} verified", value, "MBI")


@pytest.mark.parametrize(
    "value",
    [
        "0EG4TE5MK73",  # position 1 must be 1-9
        "1SG4TE5MK73",  # S is excluded
        "1EG4TE5MK7",  # too short
        "1EG4-TE5MK73",  # inconsistent dashes
        "1EGATE5MK73",  # position 4 must be a digit
        "11EG4TE5MK73",  # inside a longer run of digits
    ],
)
def test_mbi_negative(value: str) -> None:
    assert_untouched(f"Medicare id {value} verified")


@pytest.mark.parametrize("value", ["1234567893", "1245319599", "2000000002", "1987654328"])
def test_npi_positive(value: str) -> None:
    assert is_valid_npi(value)
    assert_redacted(f"Referring NPI {value}.", value, "NPI")


@pytest.mark.parametrize("value", ["1234567890", "1245319598", "3234567893", "12345678931"])
def test_npi_negative(value: str) -> None:
    assert_untouched(f"Referring NPI {value}.")


@pytest.mark.parametrize(
    "value",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",
        "3782 822463 10005",
        "3782-822463-10005",
        "6011111111111117",
        "4222222222222",
        "6011000990139424",
        "4000 0000 0000 0000 006",
        "4111 1111-1111 1111",
    ],
)
def test_card_positive(value: str) -> None:
    assert luhn_valid(value.replace(" ", "").replace("-", ""))
    assert_redacted(f"Card {value} declined", value, "CARD")


def test_card_next_to_a_year_is_still_found() -> None:
    assert redact("card 4111 1111 1111 1111 2025") == "card <REDACTED_CARD_1> 2025"


@pytest.mark.parametrize(
    "value",
    [
        "4111111111111112",
        "4111 1111 1111 1112",
        "3782 822463 10006",
        "411111111111",
        "41111111111111111111",
        "4111  1111 1111 1111",
    ],
)
def test_card_negative(value: str) -> None:
    assert_untouched(f"Card {value} declined")


@pytest.mark.parametrize(
    "value",
    [
        "(312) 555-0147",
        "312-555-0147",
        "312.555.0147",
        "312 555 0147",
        "+1 312 555 0147",
        "+13125550147",
        "1-312-555-0147",
        "1 (312) 555-0147",
        "312-555-0147 x123",
        "(312) 555-0147 ext. 12",
    ],
)
def test_phone_positive(value: str) -> None:
    assert_redacted(f"Call {value} today", value, "PHONE")


@pytest.mark.parametrize(
    "value",
    [
        "(112) 555-0147",
        "312-155-0147",
        "312-555-01478",
        "312-555.0147",
        "3125550147",
        "12-555-0147",
    ],
)
def test_phone_negative(value: str) -> None:
    assert_untouched(f"Call {value} today")


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("SSN 234-56-7890", "SSN"),
        ("card 4111-1111-1111-1111", "CARD"),
        ("NPI 1234567893", "NPI"),
        ("DOB 1962-04-17", "DATE"),
    ],
)
def test_phone_rule_does_not_eat_other_identifiers(text: str, kind: str) -> None:
    assert redact(text).endswith(f"<REDACTED_{kind}_1>")


@pytest.mark.parametrize(
    "value",
    ["jane.doe@example.org", "J.Doe+claims@mail.example.co.uk", "a_b-c%d@sub-domain.example.museum", "x@y.io"],
)
def test_email_positive(value: str) -> None:
    assert_redacted(f"Write to <{value}>.", value, "EMAIL")


@pytest.mark.parametrize(
    "text", ["user@localhost", "@example.org", "jane@.org", "jane@example.c", "handle @ example.org", "a@b.c0m"]
)
def test_email_negative(text: str) -> None:
    assert_untouched(text)


@pytest.mark.parametrize(
    "value",
    [
        "04/17/1962",
        "4/17/62",
        "1962-04-17",
        "04-17-1962",
        "04.17.1962",
        "17/04/1962",
        "Apr 17, 1962",
        "Apr. 17, 1962",
        "April 17 1962",
        "april 17th, 1962",
        "17 April 1962",
        "17 Sept 1962",
        "02/29/2024",
    ],
)
def test_date_positive(value: str) -> None:
    assert_redacted(f"DOB {value} confirmed", value, "DATE")


@pytest.mark.parametrize(
    "value",
    ["13/45/2020", "02/30/2020", "02/29/2023", "2020-13-01", "Feb 30, 2020", "31 April 2020", "1.2.25", "3/4"],
)
def test_date_negative(value: str) -> None:
    assert_untouched(f"DOB {value} confirmed")


def test_same_date_in_different_forms_shares_a_placeholder() -> None:
    assert redact("04/17/1962 = April 17, 1962 = 1962-04-17") == " = ".join(["<REDACTED_DATE_1>"] * 3)


@pytest.mark.parametrize("value", ["XYZ123456789", "xyz123456789", "M12345678-01"])
def test_member_id_positive(value: str) -> None:
    assert_redacted(f"member {value} active", value, "MEMBER_ID")


@pytest.mark.parametrize("value", ["XYZ12345678", "XYZ1234567890", "AXYZ123456789", "M12345678-1"])
def test_member_id_negative(value: str) -> None:
    assert_untouched(f"member {value} active")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023 2024 4111 1111 1111 1111 paid", "2023 2024 <REDACTED_CARD_1> paid"),
        ("4111 1111 1111 1111 3782 822463 10005", "<REDACTED_CARD_1> <REDACTED_CARD_2>"),
        ("ref 12 4111-1111-1111-1111-", "ref 12 <REDACTED_CARD_1>-"),
    ],
)
def test_cards_inside_runs_of_numbers(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(312) 555-0147/04/17/1962", "<REDACTED_PHONE_1>/<REDACTED_DATE_1>"),
        ("0147/04/17/1962", "0147/<REDACTED_DATE_1>"),
        ("9234567893 1234567893", "9234567893 <REDACTED_NPI_1>"),
    ],
)
def test_rejected_candidate_does_not_hide_an_overlapping_one(text: str, expected: str) -> None:
    assert redact(text) == expected
