"""``dm send --file``, ``files get``, ``groups share --image`` through the CLI against two
real running nodes (in-memory network, the fixture of ``test_cli_rpc``)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_cli_rpc import Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]


def test_a_file_goes_with_a_dm_and_is_saved_with_files_get(nodes: Nodes, tmp_path: Path) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    photo = tmp_path / "beach.jpg"
    photo.write_bytes(bytes(range(256)) * 1500)
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    nothing = p2p(alice, "dm", "send", "bob")
    assert nothing.exit_code == 2
    assert "give some TEXT, a --file, or both" in nothing.output
    sent = p2p_json(alice, "dm", "send", "bob", "from the beach", "--file", str(photo))
    (attached,) = sent["message"]["files"]
    assert (attached["name"], attached["size"], attached["encrypted"]) == (
        "beach.jpg",
        384000,
        True,
    )
    assert sent["message"]["body"] == {}  # the attachment (and its key) only in "files"

    def arrived() -> list[dict[str, object]]:
        read = p2p(bob, "dm", "read", nodes.account("alice"), "--json")
        return (
            p2p_json(bob, "dm", "read", nodes.account("alice"))["messages"]
            if read.exit_code == 0
            else []
        )

    wait_until(lambda: bool(arrived()))
    shown = p2p(bob, "dm", "read", nodes.account("alice"))
    assert f"[file {attached['file_id'][:12]} beach.jpg 384.0 KB]" in shown.output
    out = tmp_path / "saved"
    out.mkdir()
    got = p2p(bob, "files", "get", attached["file_id"][:10], "--out", str(out))
    assert got.exit_code == 0, got.output
    assert (out / "beach.jpg").read_bytes() == photo.read_bytes()
    again = p2p(bob, "files", "get", attached["file_id"][:10], "--out", str(out))
    assert again.exit_code != 0
    assert "exists" in again.output
    listed = p2p_json(bob, "files", "list")["files"]
    assert [(f["file_id"], f["complete"], f["reason"]) for f in listed] == [
        (attached["file_id"], True, "received")
    ]


def test_a_share_card_carries_a_product_photo(nodes: Nodes, tmp_path: Path) -> None:
    alice = nodes.home("alice")
    photo = tmp_path / "record.jpg"
    photo.write_bytes(b"\xff\xd8" + bytes(5000))
    group = p2p_json(alice, "groups", "create", "Vinyl")["group"]["group_id"]
    shared = p2p(
        alice, "groups", "share", group, "Blue Note", "https://shop.example/bn",
        "--price", "89.00", "--currency", "eur", "--image", str(photo),
    )  # fmt: skip
    assert shared.exit_code == 0, shared.output
    (message,) = p2p_json(alice, "groups", "read", group)["messages"]
    share = message["share"]
    assert share["price"] == {"amount": 8900, "currency": "EUR"}
    assert share["image"]["name"] == "record.jpg"
    assert f"[photo {share['image']['file_id'][:12]}]" in p2p(alice, "groups", "read", group).output


def test_the_progress_bar_follows_the_transfer_and_returns_its_result(
    nodes: Nodes, tmp_path: Path
) -> None:
    from p2pchat.cli.files import call_with_progress
    from p2pchat.client import SyncClient

    big = tmp_path / "big.bin"
    big.write_bytes(bytes(3 * 256 * 1024))
    with SyncClient.connect(home=nodes.home("alice"), reconnect_timeout=1.0) as client:
        info = call_with_progress(
            client, "files.add", {"path": str(big)}, label="sealing", show=True
        )
    assert info["size"] == 3 * 256 * 1024
    assert info["reason"] == "own"
    assert info["complete"]
