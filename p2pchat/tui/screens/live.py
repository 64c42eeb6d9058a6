"""Watch-together: a timeline clock, comments at their offsets, posting at the clock."""

from __future__ import annotations

import hashlib
import mimetypes
import time
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Input, Static

from ..inert import peer_text
from ..link import Event
from ..model import format_offset, parse_offset
from ..threads import GroupThread
from .base import NodeScreen
from .prompt import Prompt

__all__ = ["LiveScreen", "Media", "shared_timeline"]

_DAY_MS = 24 * 3_600_000
_SEEK_MS = 10_000
#: Comments stay on the "now" lane this long after their offset.
_LANE_MS = 8_000


class Media:
    """What is being watched: the hash everyone's comments are keyed by."""

    def __init__(self, media_hash: str, mime: str, size: int, label: str) -> None:
        self.hash, self.mime, self.size, self.label = media_hash, mime, size, label

    @classmethod
    def from_file(cls, path: Path) -> Media:
        digest = hashlib.blake2b(digest_size=32)
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return cls(digest.hexdigest(), mime, path.stat().st_size, path.name)


def shared_timeline(group_id: str) -> Media:
    """The group's own timeline, for watching without a file: same hash for everyone."""
    digest = hashlib.blake2b(b"p2pchat-live-timeline:" + group_id.encode(), digest_size=32)
    return Media(digest.hexdigest(), "application/octet-stream", 0, "the group's timeline")


class LiveScreen(NodeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("ctrl+p", "play", "Play/pause"),
        Binding("pageup", "seek(-1)", "-10s"),
        Binding("pagedown", "seek(1)", "+10s"),
        Binding("ctrl+t", "goto", "Go to"),
        Binding("ctrl+f", "fetch", "Fetch backlog"),
        Binding("ctrl+k", "media", "Media file"),
    ]

    position: reactive[int] = reactive(0)
    playing: reactive[bool] = reactive(False)

    def __init__(self, thread: GroupThread) -> None:
        super().__init__(id="live-screen")
        self.thread = thread
        self.media = shared_timeline(thread.target)
        self.comments: list[dict[str, Any]] = []
        self._started_at = 0.0
        self._started_pos = 0

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        with Horizontal(id="live-body"):
            with Vertical(id="stage"):
                yield Static(id="clock", markup=False)
                yield Static(id="lane", markup=False)
            with VerticalScroll(id="side"):
                yield Static(id="column", markup=False)
        yield Input(placeholder="Comment at the current time (Enter)", id="live-input")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.25, self._tick)
        self.query_one("#live-input", Input).focus()

    def _tick(self) -> None:
        if self.playing:
            elapsed = int((time.monotonic() - self._started_at) * 1000)
            self.position = self._started_pos + elapsed

    async def reload(self) -> None:
        span = {"start_ms": 0, "end_ms": _DAY_MS}
        params = {"group": self.thread.target, "media_hash": self.media.hash, **span}
        self.comments = list(await self.chat.link.call("groups.live_comments", params))
        title = peer_text(self.thread.title, "bold", limit=40)
        title.append("  watching ", style="dim")
        title.append_text(peer_text(self.media.label, "dim", limit=40))
        self.query_one("#title", Static).update(title)
        self._draw()

    async def node_event(self, event: Event) -> None:
        if event.type == "group.live" and self.thread.concerns(event):
            await self.reload()

    def watch_position(self, _: int) -> None:
        self._draw()

    def watch_playing(self, _: bool) -> None:
        self._draw()

    def _draw(self) -> None:
        if not self.is_mounted:
            return
        clock = Text(("\u25b6 " if self.playing else "\u23f8 ") + format_offset(self.position))
        clock.stylize("bold")
        clock.append(f"   {len(self.comments)} comments", style="dim")
        self.query_one("#clock", Static).update(clock)
        lane = Text()
        for c in self.comments:
            if self.position - _LANE_MS <= int(c["offset"]) <= self.position:
                lane.append_text(self._comment(c))
                lane.append("\n")
        self.query_one("#lane", Static).update(lane)
        column = Text("Timeline\n", style="bold")
        for c in self.comments:
            line = self._comment(c, with_offset=True)
            if int(c["offset"]) > self.position:
                line.stylize("dim")
            column.append_text(line)
            column.append("\n")
        self.query_one("#column", Static).update(column)

    def _comment(self, c: dict[str, Any], *, with_offset: bool = False) -> Text:
        out = Text(format_offset(int(c["offset"])) + " " if with_offset else "", style="dim")
        out.append_text(peer_text(self.chat.names.label(str(c["author"])) + ": ", "bold"))
        out.append_text(peer_text(str(c["text"]), limit=200))
        return out

    # -- actions ----------------------------------------------------------------------

    def _set_position(self, ms: int) -> None:
        self._started_pos, self._started_at = max(ms, 0), time.monotonic()
        self.position = self._started_pos

    def action_play(self) -> None:
        self._set_position(self.position)
        self.playing = not self.playing

    def action_seek(self, direction: int) -> None:
        self._set_position(self.position + direction * _SEEK_MS)

    def action_goto(self) -> None:
        def then(answer: str | None) -> None:
            if answer:
                try:
                    self._set_position(parse_offset(answer))
                except ValueError as exc:
                    self.notify(str(exc), severity="warning", markup=False)

        self.app.push_screen(Prompt("Go to ([h:]mm:ss):"), then)

    def action_media(self) -> None:
        def then(answer: str | None) -> None:
            if not answer:
                return
            try:
                self.media = Media.from_file(Path(answer).expanduser())
            except OSError as exc:
                self.notify(f"cannot read {answer}: {exc.strerror}", severity="error", markup=False)
                return
            self.io(self.reload())

        self.app.push_screen(
            Prompt("Media file you are watching (its hash keys the comments):"), then
        )

    def action_fetch(self) -> None:
        async def fetch() -> None:
            start = max(self.position - 5 * 60_000, 0)
            params = {
                "group": self.thread.target,
                "media_hash": self.media.hash,
                "start_ms": start,
                "end_ms": self.position + 5 * 60_000,
            }
            result = await self.chat.link.call("groups.live_fetch", params)
            self.notify(f"Fetched {result['received']} comments from members")
            await self.reload()

        self.io(fetch())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.clear()
        if not text:
            return

        async def post() -> None:
            params = {
                "group": self.thread.target,
                "media_hash": self.media.hash,
                "mime": self.media.mime,
                "size": self.media.size,
                "offset_ms": self.position,
                "text": text,
            }
            await self.chat.link.call("groups.live", params)
            await self.reload()

        self.io(post())
