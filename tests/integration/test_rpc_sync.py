"""The blocking facade, driven from plain threaded code (no trio in the caller)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pchat.client import Event, SyncClient
from p2pchat.errors import ClosedError, NotFoundError, PermissionDeniedError
from p2pchat.rpc import mint_token
from p2pchat.rpc.errors import AuthenticationError
from tests.conftest import DeterministicRng
from tests.integration.test_rpc_fakes import running

LIMIT = 10


def _script(home: Path) -> dict[str, object]:
    """What a user's script or the CLI does: no trio, no async, just calls."""
    out: dict[str, object] = {}
    with SyncClient.connect(home=home, client_name="script") as client:
        out["scopes"] = client.info.scopes
        out["echo"] = client.call("test.echo", {"text": "hi", "times": 2}, timeout=5)
        with pytest.raises(NotFoundError, match="dave"):
            client.call("test.lookup", {"name": "dave"})
        with client.subscribe(["t"]) as events:
            client.call("test.publish", {"type": "t", "count": 3})
            items = [events.next(timeout=5) for _ in range(3)]
            out["events"] = [i.data["n"] for i in items if isinstance(i, Event)]
            out["cursor"] = events.last_cursor
            with pytest.raises(TimeoutError):
                events.next(timeout=0.01)
    with pytest.raises(ClosedError):
        client.call("rpc.ping")
    return out


async def test_sync_client_from_plain_code(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with running(tmp_path / "h") as r:
            out = await trio.to_thread.run_sync(_script, r.home)
    assert out == {
        "scopes": frozenset({"read", "send", "admin"}),
        "echo": {"text": "hihi"},
        "events": [0, 1, 2],
        "cursor": 3,
    }


def _limited(home: Path, token: str) -> str:
    with pytest.raises(AuthenticationError):
        SyncClient.connect(home=home, token="p2pc_bad")
    with SyncClient.connect(home=home, token=token) as client:
        with pytest.raises(PermissionDeniedError):
            client.call("test.send", {"to": "x", "text": "y"})
        return str(client.call("test.echo", {"text": "ok"})["text"])


async def test_sync_client_errors_and_scopes(tmp_path: Path) -> None:
    home = tmp_path / "h"
    with trio.fail_after(LIMIT):
        async with running(home):
            _, token = mint_token(home, scopes=["read"], label="script", rng=DeterministicRng(3))
            assert await trio.to_thread.run_sync(_limited, home, token) == "ok"
