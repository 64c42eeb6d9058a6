"""The scrollable list of a conversation's messages, with day separators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import ListItem, ListView, Static

from ..model import ChatLine, Clock, Names
from .render import render_message

__all__ = ["MessageItem", "MessageList"]


class MessageItem(ListItem):
    """One message (``line`` set) or a day separator (``line`` None)."""

    def __init__(self, content: Text, line: ChatLine | None) -> None:
        super().__init__(Static(content, markup=False), classes="message" if line else "day")
        self.line = line
        if line is not None and line.mine:
            self.add_class("mine")
        if line is None:
            self.disabled = True


class MessageList(ListView):
    """Messages oldest first; ``show`` rebuilds it and keeps the selected message."""

    async def show(
        self,
        lines: Sequence[ChatLine],
        names: Names,
        clock: Clock,
        *,
        polls: Mapping[str, Mapping[str, Any]],
        buys: Mapping[str, Mapping[str, Any]],
        follow: bool,
    ) -> None:
        selected = self.selected_line
        # Following the end only if the selection is there: someone reading an earlier
        # message keeps it selected while new ones arrive.
        browsing = selected is not None and self.index is not None and self.index < len(self) - 1
        follow = follow and not browsing
        by_key = {line.key: line for line in lines}
        items: list[MessageItem] = []
        day = ""
        for line in lines:
            label = clock.day(line.ts)
            if label != day:
                day = label
                items.append(MessageItem(Text(f"\u2500\u2500 {label} \u2500\u2500"), None))
            content = render_message(
                line,
                names,
                clock,
                quoted=by_key.get(line.reply_to) if line.reply_to else None,
                tally=polls.get(line.key),
                buy=buys.get(line.key),
            )
            items.append(MessageItem(content, line))
        await self.clear()
        await self.extend(items)
        index = None
        if selected is not None and not follow:
            index = next(
                (i for i, it in enumerate(items) if it.line and it.line.key == selected.key), None
            )
        if index is None and items:
            index = len(items) - 1
        self.index = index
        if follow:
            self.scroll_end(animate=False)

    @property
    def selected_line(self) -> ChatLine | None:
        item = self.highlighted_child
        return item.line if isinstance(item, MessageItem) else None
