"""``metadata_target`` reads the route from the raw path, and only builds the URL without one."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from proxy_core.api.dispatch import metadata_target
from proxy_core.errors import InvalidRequestError
from proxy_core.services.paths import Endpoint


def _request(path: str, raw_path: bytes | None, query: bytes = b"") -> Request:
    scope = {"type": "http", "method": "POST", "path": path, "query_string": query, "headers": []}
    if raw_path is not None:
        scope["raw_path"] = raw_path
    return Request(scope)


def test_raw_path_is_parsed_without_its_query() -> None:
    request = _request("/project_id/p1/chat/completions", b"/project_id/p1/chat/completions?x=1", b"x=1")
    target = metadata_target(request)
    assert target is not None
    assert target.endpoint is Endpoint.CHAT_COMPLETIONS
    assert target.project_id == "p1"


def test_raw_path_wins_over_the_decoded_path() -> None:
    # The decoded path would read as two segments; the raw one keeps the encoded "/" inside the id.
    request = _request("/project_id/a/b/chat/completions", b"/project_id/a%2Fb/chat/completions")
    with pytest.raises(InvalidRequestError):
        metadata_target(request)


def test_without_raw_path_the_url_path_is_used() -> None:
    target = metadata_target(_request("/project_id/p2/chat/completions", None))
    assert target is not None
    assert target.project_id == "p2"


def test_unknown_path_is_none() -> None:
    assert metadata_target(_request("/nothing/here", b"/nothing/here")) is None
