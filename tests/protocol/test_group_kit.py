"""Shared builders for the group engine tests (devices, descriptors, content)."""

from __future__ import annotations

import importlib

import pytest

from p2pchat.protocol.content import Content
from p2pchat.protocol.group_engine import GroupEngine
from p2pchat.protocol.group_events import GroupDescriptor, InnerEvent, Post, Rules, Sealed
from p2pchat_crypto.identity import Account, Device
from tests.conftest import NOW_MS, DeterministicRng

_DEVICES: dict[tuple[str, str], Device] = {}


def device(name: str, dev: str = "1") -> Device:
    """A deterministic device of account ``name`` (cached: key generation is not free)."""
    key = (name, dev)
    if key not in _DEVICES:
        account = Account.generate(DeterministicRng(f"account-{name}"))
        _DEVICES[key] = Device.generate(
            account, DeterministicRng(f"device-{name}-{dev}"), now=NOW_MS
        )
    return _DEVICES[key]


def account(name: str) -> bytes:
    return device(name).certificate.account_key


def descriptor(
    kind: str = "public",
    *,
    join: str = "invite",
    post: str = "member",
    invite: str = "admin",
    slow: int = 0,
    max_members: int | None = None,
) -> GroupDescriptor:
    rules = Rules(join=join, post=post, invite=invite, slow=slow, max_members=max_members)
    return GroupDescriptor(kind=kind, name="test group", tags=("test",), rules=rules)


def text(value: str) -> Content:
    return Content(type="p2pchat/text", body={}, text=value)


def post(value: str) -> Post:
    return Post(content=text(value))


def new_group(kind: str = "public", **rules: object) -> tuple[GroupEngine, bytes]:
    return GroupEngine.create(
        descriptor(kind, **rules),  # type: ignore[arg-type]
        device=device("owner"),
        now=NOW_MS,
        rng=DeterministicRng(f"genesis-{kind}"),
    )


def replica(genesis: bytes, events: list[bytes] = (), **kwargs: object) -> GroupEngine:  # type: ignore[assignment]
    engine = GroupEngine.from_genesis(genesis, **kwargs)  # type: ignore[arg-type]
    for data in events:
        engine.receive(data, now=NOW_MS + 10**9)
    return engine


def test_devices_are_deterministic_and_distinct() -> None:
    assert device("a").public_key == device("a").public_key
    assert device("a").public_key != device("a", "2").public_key
    assert account("a") == device("a", "2").certificate.account_key
    assert account("a") != account("b")


GROUP_MODULES = [
    "p2pchat.protocol.group_log",
    "p2pchat.protocol.group_log_types",
    "p2pchat.protocol.group_state",
    "p2pchat.protocol.group_content",
    "p2pchat.protocol.group_live",
    "p2pchat.protocol.group_invite",
    "p2pchat.protocol.group_engine",
    "p2pchat.protocol.group_effects",
    "p2pchat.protocol.group_sync",
]


@pytest.mark.parametrize("name", GROUP_MODULES)
def test_public_surface(name: str) -> None:
    module = importlib.import_module(name)
    assert len(module.__all__) == len(set(module.__all__))
    for attr in module.__all__:
        assert hasattr(module, attr), attr
        assert not attr.startswith("_")


def test_engine_repr_shows_no_content_or_keys() -> None:
    engine, _ = new_group("private")
    inner = InnerEvent(kind="post", body=post("very secret words").to_value())
    engine.author(Sealed(ciphertext=b"c"), device=device("owner"), now=NOW_MS, plaintext=inner)
    text = repr(engine)
    assert "very secret" not in text
    assert device("owner").signing_seed().hex()[:16] not in text
    assert engine.group_id.hex()[:16] in text
