"""Property tests: valid identifiers never survive, invalid ones and clean text are untouched.

Redaction is also checked to be a fixed point on text built from identifiers, near-misses,
placeholders and separators glued together without spaces, and a body field the gateway does not
know is checked to let no identifier through, whatever its shape.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy_core.services.pii import PiiRedactor, PlaceholderMemo, redact_chat_body

REDACTOR = PiiRedactor(member_id_patterns=[r"[A-Z]{3}[0-9]{9}"])
PROPERTY_SETTINGS = settings(deadline=None, max_examples=200)

MBI_LETTERS = "ACDEFGHJKMNPQRTUVWXY"
SURROUNDING = st.text(alphabet=string.ascii_letters + " .,;:!?'\"\n", max_size=40)


def check_digit(payload: str) -> str:
    """The Luhn digit that makes ``payload + digit`` valid (independent of the code under test)."""
    total = 0
    for index, char in enumerate(reversed(payload)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str(-total % 10)


def wrong_check_digit(payload: str) -> str:
    return str((int(check_digit(payload)) + 1) % 10)


def digit_strings(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=string.digits, min_size=size, max_size=size)


@st.composite
def ssn_parts(draw: st.DrawFn, valid: bool = True) -> tuple[str, str, str]:
    area = draw(st.integers(1, 899).filter(lambda number: number != 666))
    group, serial = draw(st.integers(1, 99)), draw(st.integers(1, 9999))
    broken = "none" if valid else draw(st.sampled_from(["area", "group", "serial"]))
    if broken == "area":
        area = draw(st.sampled_from([0, 666, *range(900, 1000)]))
    elif broken == "group":
        group = 0
    elif broken == "serial":
        serial = 0
    return f"{area:03}", f"{group:02}", f"{serial:04}"


@st.composite
def ssns(draw: st.DrawFn, valid: bool = True) -> str:
    area, group, serial = draw(ssn_parts(valid))
    form = draw(st.sampled_from(["dashed", "spaced", "bare"]))
    if form == "bare":
        return f"SSN {area}{group}{serial}"
    separator = "-" if form == "dashed" else " "
    return separator.join((area, group, serial))


@st.composite
def cards(draw: st.DrawFn, valid: bool = True) -> str:
    length = draw(st.sampled_from([13, 15, 16, 19]))
    payload = draw(st.sampled_from("3456")) + draw(digit_strings(length - 2))
    digits = payload + (check_digit(payload) if valid else wrong_check_digit(payload))
    if length == 16 and draw(st.booleans()):
        separator = draw(st.sampled_from(" -"))
        return separator.join(digits[index : index + 4] for index in range(0, 16, 4))
    if length == 15 and valid and draw(st.booleans()):
        return f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    return digits


@st.composite
def npis(draw: st.DrawFn, valid: bool = True) -> str:
    payload = draw(st.sampled_from("12")) + draw(digit_strings(8))
    check = check_digit("80840" + payload)
    return payload + (check if valid else wrong_check_digit("80840" + payload))


@st.composite
def mbis(draw: st.DrawFn) -> str:
    letter = st.sampled_from(MBI_LETTERS)
    alnum = st.sampled_from(MBI_LETTERS + string.digits)
    digit = st.sampled_from(string.digits)
    classes = [st.sampled_from("123456789"), letter, alnum, digit, letter, alnum, digit, letter, letter, digit, digit]
    value = "".join(draw(strategy) for strategy in classes)
    if draw(st.booleans()):
        value = f"{value[:4]}-{value[4:7]}-{value[7:]}"
    return value.lower() if draw(st.booleans()) else value


VALID_IDENTIFIERS = st.one_of(ssns(), cards(), npis(), mbis())
INVALID_NUMBERS = st.one_of(ssns(valid=False), cards(valid=False), npis(valid=False))


def embed(left: str, identifier: str, right: str) -> str:
    return f"{left} {identifier} {right}"


def digits_of(text: str) -> str:
    return "".join(char for char in text if char.isdigit())


@PROPERTY_SETTINGS
@given(SURROUNDING, VALID_IDENTIFIERS, SURROUNDING)
def test_valid_identifiers_are_always_redacted(left: str, identifier: str, right: str) -> None:
    value = identifier.removeprefix("SSN ")
    redacted = REDACTOR.redact(embed(left, identifier, right), PlaceholderMemo())
    assert value not in redacted
    assert digits_of(value) not in digits_of(redacted)
    assert "<REDACTED_" in redacted


@PROPERTY_SETTINGS
@given(SURROUNDING, INVALID_NUMBERS, SURROUNDING)
def test_invalid_numbers_are_left_alone(left: str, number: str, right: str) -> None:
    text = embed(left, number, right)
    assert REDACTOR.redact(text, PlaceholderMemo()) == text


@PROPERTY_SETTINGS
@given(st.text(alphabet=st.characters(blacklist_categories=["Nd"], blacklist_characters="@")))
def test_text_without_digits_or_at_sign_is_returned_unchanged(text: str) -> None:
    assert REDACTOR.redact(text, PlaceholderMemo()) is text


FRAGMENTS = st.one_of(
    VALID_IDENTIFIERS,
    INVALID_NUMBERS,
    st.sampled_from(
        [
            " ",
            "-",
            ".",
            "/",
            "(",
            ")",
            "+1",
            "@",
            "x",
            "SSN ",
            "social security ",
            "SS# ",
            "April 17, 1962",
            "17 Apr 1962",
            "04/17/62",
            "jane.doe@example.org",
            "mail.example.com",
            "XYZ123456789",
            "(312) 555-0147",
            "312.555.0147 ext 12",
            "<REDACTED_SSN_1>",
            "REDACTED_",
            "<",
            ">",
            "_",
            "#",
            "\n",
        ]
    ),
    st.text(alphabet=string.digits, min_size=1, max_size=12),
    st.text(alphabet=string.ascii_letters, min_size=1, max_size=6),
)


@PROPERTY_SETTINGS
@given(st.lists(FRAGMENTS, max_size=12).map("".join))
def test_redaction_is_idempotent(text: str) -> None:
    memo = PlaceholderMemo()
    once = REDACTOR.redact(text, memo)
    assert REDACTOR.redact(once, memo) == once
    assert REDACTOR.redact(once, PlaceholderMemo()) == once


TAINTED_TEXT = st.builds(embed, SURROUNDING, VALID_IDENTIFIERS, SURROUNDING)
TAINTED_JSON = st.recursive(
    TAINTED_TEXT,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet=string.ascii_letters, max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def shape(value: Any) -> Any:
    """The value with each leaf replaced by its type: its keys and list lengths stay."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value)


def strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in strings(item)]
    return [value]


@PROPERTY_SETTINGS
@given(TAINTED_JSON)
def test_no_identifier_crosses_an_unknown_field_of_any_shape(value: Any) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "vendor_extension": value}
    memo = PlaceholderMemo()
    field = redact_chat_body(body, REDACTOR, memo)["vendor_extension"]
    assert shape(field) == shape(value)
    for text in strings(field):
        assert "<REDACTED_" in text
        assert REDACTOR.redact(text, memo) == text
