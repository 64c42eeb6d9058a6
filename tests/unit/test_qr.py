"""QR codes drawn with half blocks (p2pchat.qr), and the links they carry, through the CLI
against two real nodes (issue 17: share a contact or an invite by scanning it)."""

from __future__ import annotations

import segno

from p2pchat.qr import CONTACT_PREFIX, contact_link, qr_modules, qr_text
from tests.unit.test_cli_rpc import Nodes, nodes, p2p, p2p_json

__all__ = ["nodes"]

_DARK = {" ": (False, False), "\u2580": (True, False), "\u2584": (False, True)}


def _read_back(text: str) -> list[list[bool]]:
    """The modules the half blocks show (two rows per line), as a scanner sees them."""
    rows: list[list[bool]] = []
    for line in text.splitlines():
        pairs = [_DARK.get(ch, (True, True)) for ch in line]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    return rows


def test_the_drawing_shows_exactly_segnos_modules() -> None:
    link = "p2pchat-invite:" + "Zm9vYmFy" * 16  # the length of a real invite link
    text = qr_text(link)
    expected = [
        [bool(m) for m in row]
        for row in segno.make(link, error="l", micro=False).matrix_iter(scale=1, border=2)
    ]
    assert expected == qr_modules(link)
    shown = _read_back(text)
    assert shown[: len(expected)] == expected
    padding = shown[len(expected) :]  # an odd number of rows is padded with a light one
    assert len(padding) <= 1
    assert not any(dark for row in padding for dark in row)
    width = len(expected[0])
    assert {len(line) for line in text.splitlines()} == {width}
    assert width <= 80
    assert len(text.splitlines()) <= 30
    assert all(not dark for dark in expected[0])  # the quiet zone is light


def test_a_contact_link_adds_the_contact_it_names(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    shared = p2p_json(alice, "contacts", "share")
    assert shared["link"] == contact_link(nodes.account("alice"))
    assert shared["link"].startswith(CONTACT_PREFIX)
    drawn = p2p(alice, "contacts", "share", "--qr")
    assert drawn.exit_code == 0, drawn.output
    lines = drawn.stdout.splitlines()
    assert lines[0] == shared["link"]
    code = "\n".join(line for line in lines if set(line) <= set(" \u2580\u2584\u2588"))
    assert _read_back(code)[: len(qr_modules(shared["link"]))] == qr_modules(shared["link"])
    added = p2p_json(bob, "contacts", "add", shared["link"], "--name", "alice")["contact"]
    assert added["account"] == nodes.account("alice")


def test_an_invite_is_drawn_as_a_qr_code_that_joins(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = p2p_json(alice, "groups", "create", "Scanned")["group"]["group_id"]
    drawn = p2p(alice, "groups", "invite", group, "--qr")
    assert drawn.exit_code == 0, drawn.output
    link, *rest = drawn.stdout.splitlines()
    assert link.startswith("p2pchat-invite:")
    assert _read_back("\n".join(rest))[: len(qr_modules(link))] == qr_modules(link)
    assert p2p_json(bob, "groups", "join", link)["group"]["group_id"] == group
