"""Registration can be open, by invite, or closed."""

from __future__ import annotations

import pytest

from chatd.client import ApiError, ChatdClient
from tests.conftest import PASSWORD


@pytest.fixture
def config_overrides():
    return {"auth": {"registration": "invite"}}


async def test_invite_only_registration(base_url, services):
    code = (await services.admin.invite("cli", 1, 3600))["code"]
    async with ChatdClient(base_url) as client:
        with pytest.raises(ApiError) as err:
            await client.register("no_invite", PASSWORD)
        assert (err.value.status, err.value.code) == (403, "forbidden")
        await client.register("invited", PASSWORD, invite_code=code)
        with pytest.raises(ApiError) as err:
            await client.register("second", PASSWORD, invite_code=code)
        assert (err.value.status, err.value.code) == (403, "forbidden")
