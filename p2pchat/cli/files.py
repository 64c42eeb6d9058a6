"""``p2pchat files``: attachments held by the running node, fetched and saved with a
progress bar; and the helpers ``dm send --file`` / ``groups post --file`` use.

A FILE is named by its id (hex; a prefix of at least 8 digits is enough), as ``dm read``
and ``groups read`` show it next to each attachment. Files are encrypted blobs
(protocol-spec/blobs.md): the node seals what you send and serves it to the people
who received it; they fetch it from you and from anyone else who holds it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import click

from ..text import size_text
from ._client import call, connected
from ._output import emit_json, one_line, say, show_table
from ._state import CliState, json_option, pass_state

if TYPE_CHECKING:
    from ..client import SyncClient

__all__ = ["files", "add_files", "call_with_progress", "size_text", "files_line"]

_PROGRESS: Final = ["file.progress"]
#: A fetch may take long; the call waits as long as the node keeps working on it.
_TRANSFER_TIMEOUT: Final = 3600.0


def call_with_progress(
    client: SyncClient,
    method: str,
    params: dict[str, Any],
    *,
    label: str,
    show: bool,
    match: Callable[[dict[str, Any]], bool] = lambda _: True,
) -> Any:
    """Call ``method`` while drawing a progress bar from the ``file.progress`` events
    that ``match`` (other transfers may run at the same time)."""
    if not show:
        return client.call(method, params, timeout=_TRANSFER_TIMEOUT)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = client.call(method, params, timeout=_TRANSFER_TIMEOUT)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, re-raised
            outcome["error"] = exc

    with client.subscribe(_PROGRESS) as sub:
        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=Console(file=sys.stderr), transient=True) as bar:
            task = bar.add_task(one_line(label), total=None)
            while worker.is_alive():
                try:
                    event = sub.next(timeout=0.2)
                except TimeoutError:
                    continue
                data = getattr(event, "data", None)
                if data and data.get("total") and match(data):
                    sources = data.get("sources") or 0
                    suffix = f" ({sources} sources)" if sources > 1 else ""
                    bar.update(
                        task,
                        completed=data["done"],
                        total=data["total"],
                        description=one_line(label + suffix),
                    )
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def add_files(client: SyncClient, paths: tuple[str, ...], *, show: bool) -> list[str]:
    """Seal each file in the node (``files.add``); their ids, to attach."""
    ids = []
    for path in paths:
        absolute = str(Path(path).expanduser().resolve())
        name = Path(path).name
        info = call_with_progress(
            client,
            "files.add",
            {"path": absolute},
            label=f"sealing {name}",
            show=show,
            match=lambda e, name=name: e.get("direction") == "up" and e.get("name") == name,  # type: ignore[misc]
        )
        ids.append(info["file_id"])
    return ids


def files_line(message: dict[str, Any]) -> str:
    """The attachments of a message as one line: ``[file 1a2b3c4d5e6f photo.jpg 1.2 MB]``."""
    return " ".join(
        f"[file {f['file_id'][:12]} {one_line(f.get('name') or f['mime'])} "
        f"{size_text(f.get('size') or 0)}]"
        for f in message.get("files") or ()
    )


@click.group()
def files() -> None:
    """Attachments: list, fetch and save files (needs a running node).

    With --json, a file is {"file_id", "name", "mime", "size", "encrypted", "thumbnail"
    (hex JPEG or null), "reason" (own/received/cache/mailbox), "complete", "held_bytes",
    "created", "last_used", "holders"}.
    """


@files.command("list")
@json_option
@pass_state
def list_files(state: CliState) -> None:
    """Files the node holds or can fetch, newest first."""
    found = call(state, "files.list")
    if state.json:
        emit_json({"files": found})
        return
    show_table(
        None,
        ("File id", "Name", "Size", "Held", "Why"),
        [
            [
                f["file_id"][:12],
                one_line(f.get("name") or "?"),
                size_text(f.get("size") or 0),
                "complete" if f["complete"] else size_text(f["held_bytes"]),
                f["reason"],
            ]
            for f in found
        ],
        empty="No files yet.",
    )


@files.command()
@click.argument("file_id", metavar="ID")
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="File to write, or a directory to write the file's own name into.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@json_option
@pass_state
def get(state: CliState, file_id: str, out: Path, overwrite: bool) -> None:
    """Fetch file ID (from every holder at once) and save it.

    \b
    JSON: {"file": file, "path": str}
    """
    params = {"file": file_id, "out": str(out.expanduser().resolve()), "overwrite": overwrite}
    with connected(state) as client:
        show = not state.json and sys.stderr.isatty()
        prefix = file_id.lower()
        result = call_with_progress(
            client,
            "files.get",
            params,
            label=f"fetching {file_id[:12]}",
            show=show,
            match=lambda e: str(e.get("blob_id", "")).startswith(prefix),
        )
    if state.json:
        emit_json({"file": result, "path": result["path"]})
    else:
        say(f"Saved {result['path']} ({size_text(result.get('size') or 0)}).")


@files.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@json_option
@pass_state
def add(state: CliState, paths: tuple[str, ...]) -> None:
    """Seal files into the node, ready to attach by id (dm send --file does this itself)."""
    with connected(state) as client:
        ids = add_files(client, paths, show=not state.json and sys.stderr.isatty())
    if state.json:
        emit_json({"file_ids": ids})
    else:
        for path, file_id in zip(paths, ids, strict=True):
            say(f"{file_id[:12]}  {Path(path).name}")


@files.command()
@json_option
@pass_state
def gc(state: CliState) -> None:
    """Delete the files retention no longer covers."""
    result = call(state, "files.gc")
    if state.json:
        emit_json(result)
    else:
        say(f"Deleted {result['deleted']} files ({size_text(result['bytes'])}).")
