"""A link to hand over in person: as text to copy and as a QR code to scan (invite links,
our own contact link)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from p2pchat.qr import QR_STYLE, qr_text

from .base import NodeModal

__all__ = ["ShareScreen"]


class ShareScreen(NodeModal):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Close")]

    def __init__(self, title: str, link: str, hint: str) -> None:
        super().__init__()
        self.title_text = title
        self.link = link
        self.hint = hint

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="share"):
            yield Static(Text(self.title_text, style="bold"), markup=False)
            yield Static(Text(self.link), id="share-link", markup=False)
            yield Static(Text(qr_text(self.link), style=QR_STYLE), id="share-qr", markup=False)
            yield Static(self.hint, classes="hint", markup=False)
        yield Footer()
