"""``p2pchat devices history-sync`` and ``history-allow``: direct-message history for a
newly linked device (protocol-spec/devices.md section 4.4), over the node's RPC API.

The new device asks (``history-sync DEVICE``) and draws a progress bar; the device that
has the history shows what is asked and sends it only if its user agrees
(``history-allow``). An interrupted sync continues where it stopped when asked again.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

import click

from ..errors import ConfigError, PermissionDeniedError
from ._client import CALL_TIMEOUT, connected
from ._output import emit_json, one_line, say, warn
from ._state import CliState, json_option, now_ms, pass_state

__all__ = ["history_sync", "history_allow", "parse_since", "link_history_since", "HISTORY_HELP"]

#: How long ``history-sync`` waits in all (the other user's consent, then the transfer).
_SYNC_TIMEOUT_S = 3600.0
_UNITS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


#: ``--history`` of ``node run --link`` and ``devices join``.
HISTORY_HELP = (
    "Direct-message history to copy from the linking device once this one runs: all, a "
    "window (30d, 12h, 2w) or none; its user agrees there (`p2pchat devices history-allow`). "
    "Default: ask here (none when no one can answer: --json or no terminal)."
)


def parse_since(text: str, *, now: int, option: str = "--since") -> int:
    """``all`` (0), or a window back from ``now``: ``30d``, ``12h``, ``2w``, ``90m``."""
    text = text.strip().lower()
    if text == "all":
        return 0
    match = re.fullmatch(r"(\d{1,6})([mhdw])", text)
    if match is None:
        raise ConfigError(f"{option} takes `all` or a window such as 30d, 12h, 2w")
    return max(0, now - int(match.group(1)) * _UNITS[match.group(2)])


def link_history_since(state: CliState, value: str | None) -> int | None:
    """``--history`` when linking: the ``since`` (ms) of the history to ask the linking
    device for, or ``None`` for none. Not given: asked here if a person can answer, else
    none (a script never waits on a prompt)."""
    from . import _passphrase

    if value is None:
        if state.json or not _passphrase.stdin_is_tty():
            return None
        value = click.prompt(
            "Copy your direct-message history from the other device? "
            "(all, a window such as 30d, or none)",
            default="all",
        )
    if value.strip().lower() == "none":
        return None
    return parse_since(value, now=now_ms(), option="--history")


@click.command("history-sync")
@click.argument("device")
@click.option("--since", default="all", show_default=True, help="all, or e.g. 30d, 12h, 2w.")
@click.option("--max", "max_", type=click.IntRange(1, 100_000), default=100_000, show_default=True)
@json_option
@pass_state
def history_sync(state: CliState, device: str, since: str, max_: int) -> None:
    """Copy your direct-message history from another device of yours (DEVICE).

    Its user must agree there (`p2pchat devices history-allow`). Messages arrive as they
    were (same ids, times, delivery), are not shown as new, and are never duplicated; an
    interrupted copy continues where it stopped when you run this again.

    \b
    JSON: {"device", "received", "imported", "total", "done"}
    """
    from ..client import Gap

    params = {"device": device, "since": parse_since(since, now=now_ms()), "max": max_}
    outcome: dict[str, Any] = {}
    with connected(state) as client:

        def run() -> None:
            try:
                outcome["result"] = client.call(
                    "devices.history_sync", params, timeout=_SYNC_TIMEOUT_S
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                outcome["error"] = exc

        with client.subscribe(["device.history_progress"]) as sub:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            if not state.json:
                say("Asked for the history: agree on the other device")
                say("    (p2pchat devices history-allow)")
            _draw(worker, sub, Gap, show=not state.json)
            worker.join()
    if "error" in outcome:
        raise outcome["error"]
    result = outcome["result"]
    if state.json:
        emit_json(result)
    else:
        say(
            f"History copied: {result['received']} messages "
            f"({result['imported']} new on this device)."
        )


def _draw(worker: threading.Thread, sub: Any, gap: type, *, show: bool) -> None:
    if not show:
        while worker.is_alive():
            worker.join(0.2)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("history"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task("history", total=None)
        while worker.is_alive():
            try:
                item = sub.next(timeout=0.2)
            except TimeoutError:
                continue
            if isinstance(item, gap):
                continue
            data = item.data
            if data.get("total"):
                bar.update(task, completed=data["received"], total=data["total"])


def _describe(ask: dict[str, Any], names: dict[str, str]) -> str:
    window = "all of it" if not ask["since"] else f"since {_when(ask['since'])}"
    resume = ", continuing an interrupted copy" if ask.get("resume") else ""
    key = f"{ask['device'][:16]}…"
    name = names.get(ask["device"])
    who = f"Your device '{name}' ({key})" if name else f"Device {key}"
    return (
        f"{who} asks for your direct-message history "
        f"({window}, at most {ask['max']} messages{resume})."
    )


def _when(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M")


@click.command("history-allow")
@click.option("--yes", is_flag=True, help="Send without asking (scripts and tests).")
@click.option("--refuse", is_flag=True, help="Refuse the request.")
@click.option("--wait", type=click.FloatRange(0, 600), default=120.0, show_default=True)
@json_option
@pass_state
def history_allow(state: CliState, yes: bool, refuse: bool, wait: float) -> None:
    """Answer a device of yours that asks for your direct-message history.

    Waits up to --wait seconds for the request, shows what it asks for, and sends the
    history only if you agree. It travels encrypted for that device alone.

    \b
    JSON: {"device", "since", "max", "resume", "accepted"}
    """
    from ..client import Gap

    with connected(state) as client, client.subscribe(["device.history_request"]) as sub:
        ask = client.call("devices.history_pending", {}, timeout=CALL_TIMEOUT)
        deadline = now_ms() + int(wait * 1000)
        while ask is None:
            left = (deadline - now_ms()) / 1000
            if left <= 0:
                raise PermissionDeniedError("no device of yours asked for history in time")
            try:
                item = sub.next(timeout=left)
            except TimeoutError:
                continue
            if not isinstance(item, Gap):
                ask = item.data
        if not state.json:
            found = client.call("devices.list", {}, timeout=CALL_TIMEOUT)
            names = {d["device"]: d["name"] for d in found if d.get("name")}
            say(one_line(_describe(ask, names)))
        accept = not refuse and (yes or click.confirm("Send it?", default=False))
        answer = client.call("devices.history_confirm", {"accept": accept}, timeout=CALL_TIMEOUT)
    if state.json:
        emit_json(answer)
    elif accept:
        say("Sending the history; the other device shows its progress.")
    else:
        warn("Refused: nothing was sent.")
