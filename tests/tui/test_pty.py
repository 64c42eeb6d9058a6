"""The real ``p2pchat chat`` binary in a pseudo-terminal, on a real ``p2pchat node run``.

The node is a real process on 127.0.0.1 (as in ``tests/integration/test_cli_node.py``);
the chat runs under ``pexpect`` in an 80x24 pty; the test reads the screen it draws,
quits with Ctrl+Q and expects a clean exit. Every process is stopped in ``finally``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tests.integration.test_cli_node import LIMIT, env_for, wait_for_rpc

pytestmark = pytest.mark.integration

STEP = 20.0


def test_p2pchat_chat_draws_the_inbox_in_a_terminal_and_quits(tmp_path: Path) -> None:
    home = tmp_path / "home"
    args = ["node", "run", "--create-identity", "--port", "0", "--listen", "127.0.0.1"]
    node = subprocess.Popen(
        [sys.executable, "-m", "p2pchat.cli", *args],
        env=env_for(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    chat: pexpect.spawn | None = None
    try:
        wait_for_rpc(home, node)
        env = {**env_for(home), "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
        chat = pexpect.spawn(
            sys.executable,
            ["-m", "p2pchat.cli", "chat"],
            env=env,
            dimensions=(24, 80),
            timeout=STEP,
            encoding="utf-8",
            codec_errors="replace",
        )
        chat.expect("connected")
        chat.expect("Contacts")  # the footer's key bindings
        chat.sendcontrol("q")
        chat.expect(pexpect.EOF)
        chat.close()
        assert chat.exitstatus == 0, chat.before
    finally:
        if chat is not None and chat.isalive():
            chat.terminate(force=True)
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=LIMIT)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait(timeout=LIMIT)


def test_p2pchat_chat_without_a_node_says_how_to_start_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "p2pchat.cli", "chat"],
        env=env_for(tmp_path / "empty"),
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )
    assert done.returncode != 0
    assert "p2pchat node run" in done.stderr
