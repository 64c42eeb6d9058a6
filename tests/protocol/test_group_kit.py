"""Shared builders for the group engine tests (devices, descriptors, content)."""

from __future__ import annotations

from p2pchat.protocol.content import Content
from p2pchat.protocol.group_engine import GroupEngine
from p2pchat.protocol.group_events import GroupDescriptor, Post, Rules
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
