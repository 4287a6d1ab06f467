"""A request body's content coding: identity is read, anything else is a 415 naming what is accepted."""

from __future__ import annotations

import pytest

from proxy_core.api.body import check_content_encoding
from proxy_core.errors import InvalidRequestError


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_identity_is_accepted(encoding: str | None) -> None:
    check_content_encoding(encoding)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "gzip, identity"])
def test_a_coding_is_415_with_accept_encoding(encoding: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_content_encoding(encoding)
    assert info.value.status_code == 415
    assert info.value.code == "unsupported_content_encoding"
    assert info.value.headers == {"Accept-Encoding": "identity"}
