"""What the testnet records about each node: events as they arrive, and process samples.

An :class:`Inbox` subscribes to a node's ``dm.received`` and ``group.message`` events and
stamps each with the wall clock when it arrived (every namespace shares this host's clock,
so a sender's send time and a receiver's arrival time are comparable). A new one is made
after every restart. :func:`sample_process` reads ``/proc/<pid>``: CPU seconds, RSS, open fds.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pchat.client import Event, SyncClient

__all__ = ["Arrival", "Inbox", "sample_process"]

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Arrival:
    at: float
    node: str
    type: str
    text: str
    data: dict[str, Any]


class Inbox:
    """A thread that records one node's events until the node (or :meth:`close`) ends it."""

    def __init__(self, node: str, client: SyncClient, sink: list[Arrival], lock: threading.Lock):
        self.node = node
        self._sink = sink
        self._lock = lock
        self._stop = threading.Event()
        self._sub = client.subscribe(["dm.received", "group.message"])
        self._thread = threading.Thread(target=self._run, name=f"inbox-{node}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._sub.next(timeout=1.0)
            except TimeoutError:
                continue
            except Exception:
                return
            if isinstance(item, Event):
                arrival = Arrival(
                    time.time(), self.node, item.type, str(item.data.get("text", "")), item.data
                )
                with self._lock:
                    self._sink.append(arrival)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def sample_process(pid: int) -> dict[str, float] | None:
    """CPU seconds (user + system), RSS in MiB and open fds of ``pid`` (None once gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / _TICKS
        rss_kb = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return None
    return {"cpu_s": cpu, "rss_mib": rss_kb / 1024, "fds": float(fds)}
