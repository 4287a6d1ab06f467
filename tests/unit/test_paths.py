"""Every route shape the gateway's clients produce, and the ids it must refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy_core.errors import InvalidRequestError
from proxy_core.services.paths import Endpoint, RolloutIds, parse_metadata_path

ROLLOUT = "rollout_id/r1/invocation_id/i1/experiment_id/e1/run_id/run1/row_id/row1"
IDS = RolloutIds("r1", "i1", "e1", "run1", "row1")


@pytest.mark.parametrize("prefix", ["", "/v1"])
@pytest.mark.parametrize("project", ["", "/project_id/p1"])
@pytest.mark.parametrize("base_url", ["", "/encoded_base_url/aHR0cDovL3g="])
@pytest.mark.parametrize("suffix", ["/chat/completions", "/v1/chat/completions"])
def test_tracked_shapes(prefix: str, project: str, base_url: str, suffix: str) -> None:
    parsed = parse_metadata_path(f"{prefix}{project}/{ROLLOUT}{base_url}{suffix}")
    assert parsed is not None
    assert parsed.endpoint is Endpoint.CHAT_COMPLETIONS
    assert parsed.project_id == ("p1" if project else None)
    assert parsed.rollout == IDS
    assert parsed.encoded_base_url == ("aHR0cDovL3g=" if base_url else None)


@pytest.mark.parametrize(
    ("tail", "endpoint"),
    [
        ("responses", Endpoint.RESPONSES),
        ("embeddings", Endpoint.EMBEDDINGS),
        ("completions", Endpoint.TEXT_COMPLETIONS),
        ("messages", Endpoint.MESSAGES),
    ],
)
@pytest.mark.parametrize("prefix", ["", "/v1"])
@pytest.mark.parametrize("project", ["", "/project_id/p1"])
@pytest.mark.parametrize("rollout", ["", f"/{ROLLOUT}", f"/{ROLLOUT}/encoded_base_url/aHR0cDovL3g="])
@pytest.mark.parametrize("v1", ["", "/v1"])
def test_every_endpoint_on_every_prefix(
    tail: str, endpoint: Endpoint, prefix: str, project: str, rollout: str, v1: str
) -> None:
    parsed = parse_metadata_path(f"{prefix}{project}{rollout}{v1}/{tail}")
    assert parsed is not None
    assert parsed.endpoint is endpoint
    assert parsed.project_id == ("p1" if project else None)
    assert parsed.rollout == (IDS if rollout else None)
    assert parsed.encoded_base_url == ("aHR0cDovL3g=" if "encoded" in rollout else None)


@pytest.mark.parametrize(
    ("path", "project"),
    [
        ("/chat/completions", None),
        ("/v1/chat/completions", None),
        ("/project_id/p9/chat/completions", "p9"),
        ("/v1/project_id/p9/chat/completions", "p9"),
        ("/project_id/p9/v1/chat/completions", "p9"),
    ],
)
def test_untracked_shapes(path: str, project: str | None) -> None:
    parsed = parse_metadata_path(path)
    assert parsed is not None
    assert parsed.rollout is None
    assert parsed.project_id == project


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/health",
        "/chat",
        "/completion",
        "/v1/messages/batches",
        f"/{ROLLOUT}/embeddings/x",
        "/v1/v1/v1/chat/completions",
        "/rollout_id/r1/chat/completions",
        "/rollout_id/r1/invocation_id/i1/chat/completions",
        f"/{ROLLOUT}/extra/chat/completions",
        f"/project_id/p/{ROLLOUT}/chat/completions/more",
        "/encoded_base_url/abc/chat/completions",
    ],
)
def test_other_paths_are_not_routes(path: str) -> None:
    assert parse_metadata_path(path) is None


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/rollout_id//invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions", "rollout_id"),
        ("/rollout_id/a%2Fb/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions", "rollout_id"),
        ("/rollout_id/r/invocation_id/a,b/experiment_id/e/run_id/r/row_id/w/chat/completions", "invocation_id"),
        ("/rollout_id/r/invocation_id/i/experiment_id/a%20b/run_id/r/row_id/w/chat/completions", "experiment_id"),
        ("/rollout_id/r/invocation_id/i/experiment_id/e/run_id/%0d%0a/row_id/w/chat/completions", "run_id"),
        ("/rollout_id/r/invocation_id/i/experiment_id/e/run_id/r/row_id/%00/chat/completions", "row_id"),
        ("/rollout_id/r/invocation_id/i/experiment_id/e/run_id/r/row_id/%ff/chat/completions", "row_id"),
        (f"/rollout_id/{'x' * 257}/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions", "rollout_id"),
        ("/project_id/a%09b/chat/completions", "project_id"),
        ("/rollout_id/r%E2%80%AEevil/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions", "rollout_id"),
        ("/rollout_id/r/invocation_id/i%E2%80%8B/experiment_id/e/run_id/r/row_id/w/chat/completions", "invocation_id"),
        ("/project_id/%EF%BB%BFp/chat/completions", "project_id"),
    ],
)
def test_bad_ids_are_400_naming_the_segment(path: str, param: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_metadata_path(path)
    assert info.value.param == param
    assert info.value.status_code == 400


def test_percent_encoded_ids_are_decoded() -> None:
    parsed = parse_metadata_path(
        "/rollout_id/r%C3%A9/invocation_id/i/experiment_id/e/run_id/r/row_id/w%3A1/chat/completions"
    )
    assert parsed is not None
    assert parsed.rollout is not None
    assert parsed.rollout.rollout_id == "ré"
    assert parsed.rollout.row_id == "w:1"


def test_traces_paths() -> None:
    assert parse_metadata_path("/v1/traces") == parse_metadata_path("/traces")
    pointwise = parse_metadata_path("/project_id/p/v1/traces/pointwise")
    assert pointwise is not None
    assert pointwise.endpoint is Endpoint.TRACES_POINTWISE
    assert pointwise.project_id == "p"


_SAFE = st.text(
    alphabet=st.characters(blacklist_characters="/,%", blacklist_categories=("Cc", "Cf", "Zs", "Zl", "Zp", "Cs")),
    min_size=1,
    max_size=40,
)


@given(ids=st.tuples(_SAFE, _SAFE, _SAFE, _SAFE, _SAFE))
def test_any_safe_ids_round_trip(ids: tuple[str, str, str, str, str]) -> None:
    from urllib.parse import quote

    keys = ("rollout_id", "invocation_id", "experiment_id", "run_id", "row_id")
    path = "/" + "/".join(f"{k}/{quote(v, safe='')}" for k, v in zip(keys, ids, strict=True)) + "/chat/completions"
    parsed = parse_metadata_path(path)
    assert parsed is not None
    assert parsed.rollout == RolloutIds(*ids)


@pytest.mark.parametrize("prefix", ["", "/v1", "/project_id/p1", "/v1/project_id/p1", "/project_id/p1/v1"])
@pytest.mark.parametrize(("tail", "endpoint"), [("/logs", Endpoint.LOGS), ("/status", Endpoint.STATUS)])
def test_remote_rollout_shapes(prefix: str, tail: str, endpoint: Endpoint) -> None:
    parsed = parse_metadata_path(prefix + tail)
    assert parsed is not None
    assert parsed.endpoint is endpoint
    assert parsed.project_id == ("p1" if "p1" in prefix else None)
    assert parse_metadata_path(f"/{ROLLOUT}{tail}") is None, "no rollout ids before these routes"
