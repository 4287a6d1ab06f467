"""Gateway authentication: none by default, static keys bound to projects when configured."""

from __future__ import annotations

import pytest

from proxy_core.errors import AuthenticationError, PermissionDeniedError
from proxy_core.services.auth import NoAuth, StaticApiKeys

KEY_A = "gw-key-project-a-0001"
KEY_ALL = "gw-key-everything-0002"


async def test_no_auth_forwards_the_bearer_as_provider_key() -> None:
    principal = await NoAuth().authenticate({"authorization": "Bearer sk-provider"})
    assert principal.provider_api_key == "sk-provider"
    assert principal.may_use("anything")
    assert (await NoAuth().authenticate({})).provider_api_key is None


async def test_static_keys_bind_projects() -> None:
    auth = StaticApiKeys([("a", KEY_A, ["A"]), ("all", KEY_ALL, ["*"])])
    principal = await auth.authenticate({"authorization": f"Bearer {KEY_A}"})
    assert principal.provider_api_key is None
    principal.require("A")
    with pytest.raises(PermissionDeniedError):
        principal.require("B")
    with pytest.raises(PermissionDeniedError):
        principal.require(None)
    (await auth.authenticate({"authorization": f"bearer {KEY_ALL}"})).require("B")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", f"Bearer {KEY_A}x", "Bearer gw-key"])
async def test_bad_or_missing_keys_are_401(header: str | None) -> None:
    auth = StaticApiKeys([("a", KEY_A, ["A"])])
    headers = {} if header is None else {"authorization": header}
    with pytest.raises(AuthenticationError):
        await auth.authenticate(headers)
