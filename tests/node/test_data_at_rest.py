"""A copied home without the passphrase: no DM body, contact name, group name or post.

A real node with its default SQLite store in its home writes a DM, a named contact, a
public group (name, tags, about) and a post; every byte of every file of the home
(keystore aside, the WAL included, while running and after closing) is then searched
for those strings, and every file must be 0600.
"""

from __future__ import annotations

import stat
from pathlib import Path

from p2pchat.config import NodeConfig
from p2pchat.node import Node
from tests.conftest import DeterministicRng
from tests.node.harness import FAST, hub, make_identity, memory_opener

SECRETS = {
    "dm body": b"the password is xylophone-42",
    "contact name": b"Zanzibar Bob",
    "group name": b"Quokka Fanclub",
    "group tag": b"quokkatag",
    "group about": b"about quokkas only",
    "post": b"quokka post text 4711",
}


def leaks(home: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for file in sorted(home.rglob("*")):
        if file.is_file():
            data = file.read_bytes()
            for what, secret in SECRETS.items():
                if secret in data:
                    found.setdefault(what, []).append(file.name)
    return found


def modes(home: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in home.rglob("*")
        if p.is_file() and stat.S_IMODE(p.stat().st_mode) != 0o600
    }


async def test_a_copied_home_reveals_no_names_bodies_or_posts(tmp_path: Path) -> None:
    alice, bob = make_identity("alice"), make_identity("bob")
    home = tmp_path / "alice"
    async with hub() as h:
        node = Node(
            NodeConfig(home=home, delivery=FAST),
            alice,
            network=memory_opener(h),
            rng=DeterministicRng("alice-node"),
            seed=1,
        )
        async with node:
            await node.add_contact(bob.account.account_key, name=SECRETS["contact name"].decode())
            await node.send_dm(bob.account.account_key, SECRETS["dm body"].decode())
            group = await node.create_group(
                SECRETS["group name"].decode(),
                tags=(SECRETS["group tag"].decode(),),
                about=SECRETS["group about"].decode(),
            )
            await node.post(group, SECRETS["post"].decode())
            # Everything is written: the history reads back through the node.
            assert [m.body for m in await node.history(bob.account.account_key)]
            assert (home / "store.sqlite3-wal").exists()
            assert leaks(home) == {}
            assert modes(home) == {}
        assert leaks(home) == {}
        assert modes(home) == {}
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
