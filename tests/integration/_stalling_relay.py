"""``p2pchat node run`` (the command users run) whose circuit relay can half-kill a circuit.

Usage: ``python -m tests.integration._stalling_relay <trigger file> python -m p2pchat.cli ...``.

Fault injection for ``test_nat_traversal``: py-libp2p's hop relay copies each circuit with
one task per direction (``CircuitRelay._relay_data``). Once the trigger file exists
and holds a peer id, every direction of a circuit *that already exists* whose source is
that peer keeps reading and drops what it reads, as a direction whose copy task died
would, while the other direction keeps flowing and both TCP connections stay healthy.
Circuits opened after the trigger relay normally, so a redial recovers.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path
from typing import Any

from p2pchat.net.relay import CircuitRelay


def stalled(trigger: Path, source: str, opened: float) -> bool:
    """The trigger names ``source`` and was written after the circuit opened."""
    try:
        return trigger.read_text().strip() == source and trigger.stat().st_mtime > opened
    except OSError:
        return False


def install(trigger: Path) -> None:
    relay_data = CircuitRelay._relay_data

    async def stalling(self: Any, src: Any, dst: Any, peer_id: Any, *args: Any) -> None:
        opened = time.time()
        source = src.muxed_conn.peer_id.to_base58()
        read = src.read

        async def maybe_drop(n: int | None = None) -> bytes:
            while True:
                data: bytes = await read(n)
                if not data or not stalled(trigger, source, opened):
                    return data

        src.read = maybe_drop
        await relay_data(self, src, dst, peer_id, *args)

    CircuitRelay._relay_data = stalling  # type: ignore[method-assign,assignment]


if __name__ == "__main__":
    install(Path(sys.argv[1]))
    assert sys.argv[2:5] == [sys.executable, "-m", "p2pchat.cli"], sys.argv
    sys.argv = ["p2pchat", *sys.argv[5:]]
    runpy.run_module("p2pchat.cli", run_name="__main__", alter_sys=True)
