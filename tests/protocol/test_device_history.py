"""The history stream's box and bounds (devices.md section 4.4), and the CLI's --since."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from nacl.signing import SigningKey

from p2pchat.cli import _passphrase, cli
from p2pchat.cli.devices_history import parse_since
from p2pchat.errors import ConfigError, WireError
from p2pchat.protocol.device_history import (
    MAX_CHUNK_ITEMS,
    HistoryBox,
    HistoryChunk,
    HistoryChunkContent,
    HistoryItem,
    decode_chunk_content,
    decode_history_message,
)
from p2pchat_crypto import cbor
from tests.conftest import DeterministicRng

E_SEED, N_SEED, X_SEED = (DeterministicRng(n)(32) for n in ("e", "n", "x"))
E, N, X = (bytes(SigningKey(s).verify_key) for s in (E_SEED, N_SEED, X_SEED))
NONCE = b"\x05" * 16
ITEM = HistoryItem(
    peer=b"\x0b" * 32,
    pos=1,
    id=b"\x01" * 16,
    sender=b"\x0b" * 32,
    device=b"\x0c" * 32,
    out=False,
    ts=1,
    rx=2,
    type="p2pchat/text",
    body=b"\xa1dtextbhi",
    state="delivered",
)


def test_only_the_two_devices_open_a_chunk() -> None:
    sealed = HistoryBox(existing=E, new=N, own_seed=E_SEED, nonce=NONCE).seal(
        0, HistoryChunkContent(items=(ITEM,), left=0), rng=DeterministicRng("box")
    )
    chunk = decode_history_message(sealed)
    assert isinstance(chunk, HistoryChunk)
    opened = HistoryBox(existing=E, new=N, own_seed=N_SEED, nonce=NONCE).open(chunk, expected=0)
    assert opened.items == (ITEM,)
    # A third device of the same account (it holds the account key, not these two keys).
    third = HistoryBox(existing=E, new=X, own_seed=X_SEED, nonce=NONCE)
    with pytest.raises(WireError) as caught:
        third.open(chunk, expected=0)
    assert caught.value.reason == "bad-box"


def test_a_chunk_holds_at_most_64_items() -> None:
    items = [ITEM.to_value()] * (MAX_CHUNK_ITEMS + 1)
    with pytest.raises(WireError):
        decode_chunk_content(cbor.encode({"items": items, "left": 0}))
    assert len(decode_chunk_content(cbor.encode({"items": items[:64], "left": 0})).items) == 64


def test_since_takes_all_or_a_window() -> None:
    now = 10 * 86_400_000
    assert parse_since("all", now=now) == 0
    assert parse_since("2d", now=now) == 8 * 86_400_000
    assert parse_since("12h", now=now) == now - 12 * 3_600_000
    assert parse_since("999w", now=now) == 0
    with pytest.raises(ConfigError):
        parse_since("yesterday", now=now)


def test_history_at_link_is_checked_first_and_never_prompts_a_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner, home = CliRunner(), ["--home", str(tmp_path / "new")]
    wrong = runner.invoke(cli, [*home, "devices", "join", "p2pchat-link:x", "--history", "ages"])
    assert wrong.exit_code != 0
    assert "--history takes `all` or a window" in wrong.output
    alone = runner.invoke(cli, [*home, "node", "run", "--history", "all"])
    assert alone.exit_code != 0
    assert "--history only applies with --link" in alone.output
    # Not given, and no one to ask: no prompt, no history; linking goes on (to the code).
    monkeypatch.setattr(_passphrase, "stdin_is_tty", lambda: False)
    quiet = runner.invoke(cli, [*home, "devices", "join", "p2pchat-link:x"], input="")
    assert "Copy your direct-message history" not in quiet.output
    assert "link code" in quiet.output.lower()
    # A person at a terminal is asked (and a wrong answer is refused before linking).
    monkeypatch.setattr(_passphrase, "stdin_is_tty", lambda: True)
    asked = runner.invoke(cli, [*home, "devices", "join", "p2pchat-link:x"], input="soon\n")
    assert "Copy your direct-message history" in asked.output
    assert "--history takes `all` or a window" in asked.output
