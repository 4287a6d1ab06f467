"""What ``/logs`` takes from an agent: integer codes only, every rollout tag, the record's own time."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.errors import InvalidRequestError
from proxy_core.services.rollout_log_records import (
    LogsQuery,
    claimed_rollouts,
    parse_log_post,
    parse_logs_query,
    parse_status_query,
    record_severity,
    record_timestamp,
)


def body(**fields: Any) -> bytes:
    return json.dumps({"tags": ["rollout_id:r1"], **fields}).encode()


def test_the_handlers_record_is_taken_as_sent() -> None:
    post = parse_log_post(
        body(
            program="my_prog",
            status={"code": 101, "message": "running", "details": [{"reason": "x"}], "other": 1},
            message="hello",
            tags=["rollout_id:r9", "rollout_id:r10", "experiment_id:e", "rollout_id:r9"],
            extras={"a": [1, {"b": None}]},
        )
    )
    assert post.program == "my_prog"
    assert post.status == {"code": 101, "message": "running", "details": [{"reason": "x"}]}
    assert post.rollout_ids == ("r9", "r10")
    assert post.tags == ("rollout_id:r9", "rollout_id:r10", "experiment_id:e", "rollout_id:r9")
    assert post.extras == {"a": [1, {"b": None}]}


def test_missing_optional_fields_take_the_handlers_defaults() -> None:
    post = parse_log_post(body(status={"code": 0}))
    assert (post.program, post.message, post.extras) == ("eval_protocol", "", {})
    assert post.status == {"code": 0, "message": None, "details": []}
    assert parse_log_post(body(status=None, extras=None)).status is None


@given(
    st.one_of(
        st.text(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.none(), st.lists(st.integers())
    )
)
def test_a_code_that_is_not_a_json_integer_is_refused(code: Any) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_log_post(body(status={"code": code}))
    assert refused.value.param == "status.code"


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_every_non_negative_32_bit_code_is_kept(code: int) -> None:
    status = parse_log_post(body(status={"code": code})).status
    assert status is not None
    assert status["code"] == code


def test_claimed_rollouts_reads_what_it_can_for_a_log_line() -> None:
    assert claimed_rollouts(b"not json") == []
    assert claimed_rollouts(b"[1]") == []
    assert claimed_rollouts(orjson.dumps({"tags": ["rollout_id:a", 5, "rollout_id:b c", "rollout_id:d"]})) == ["a", "d"]
    many = orjson.dumps({"tags": [f"rollout_id:r{n}" for n in range(10)]})
    assert claimed_rollouts(many) == ["r0", "r1", "r2"]


@pytest.mark.parametrize(
    ("extras", "stamp"),
    [
        ({"timestamp": "2026-12-07T03:59:19.406844Z"}, "2026-12-07T03:59:19.406844Z"),
        ({"timestamp": "2026-12-07T03:59:19+02:00"}, "2026-12-07T03:59:19+02:00"),
        ({"timestamp": "2026-12-07"}, None),
        ({"timestamp": "04/17/1962 at noon T"}, None),
        ({"timestamp": 1765079959}, None),
        ({}, None),
    ],
)
def test_only_an_iso_date_time_is_the_records_time(extras: dict[str, Any], stamp: str | None) -> None:
    assert record_timestamp(extras) == stamp


def test_severity_is_a_level_name_or_info() -> None:
    assert record_severity({"level": "ERROR"}) == "ERROR"
    assert record_severity({"level": "loud"}) == "INFO"
    assert record_severity({"level": 40}) == "INFO"
    assert record_severity({}) == "INFO"


def test_the_readers_query() -> None:
    query = parse_logs_query(
        {"tags": ["rollout_id:r1", "", "experiment_id:e"], "limit": ["5"], "hours_back": ["1.5"], "program": ["p"]}
    )
    assert query == LogsQuery("r1", ("rollout_id:r1", "experiment_id:e"), 5, 1.5, "p")
    assert parse_logs_query({"tags": ["rollout_id:r1"]}) == LogsQuery("r1", ("rollout_id:r1",))
    with pytest.raises(InvalidRequestError, match="given more than once"):
        parse_logs_query({"tags": ["rollout_id:r1"], "limit": ["1", "2"]})
    with pytest.raises(InvalidRequestError, match="must be between 0 and 8784"):
        parse_logs_query({"tags": ["rollout_id:r1"], "hours_back": ["nan"]})
    with pytest.raises(InvalidRequestError, match="must not contain"):
        parse_logs_query({"tags": ["rollout_id:a/b"]})


def test_the_status_query() -> None:
    assert parse_status_query({"rollout_id": ["r-1"]}) == "r-1"
    with pytest.raises(InvalidRequestError, match="must not contain"):
        parse_status_query({"rollout_id": ["r 1"]})
    with pytest.raises(InvalidRequestError, match="given more than once"):
        parse_status_query({"rollout_id": ["a", "b"]})
