"""``p2pchat groups share``: a share card (a link, a price, a product photo)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ._client import CALL_TIMEOUT, connected
from ._output import emit_json, say
from ._state import CliState, json_option, pass_state
from .files import add_files

__all__ = ["share"]


@click.command()
@click.argument("group")
@click.argument("title")
@click.argument("url")
@click.option("--price", help="Price, e.g. 19.99 (with --currency).")
@click.option("--currency", metavar="CODE", help="ISO 4217 code, e.g. EUR.")
@click.option("--note", help="A comment on the card.")
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False),
    help="A picture shown on the card (with an inline thumbnail).",
)
@json_option
@pass_state
def share(
    state: CliState,
    group: str,
    title: str,
    url: str,
    price: str | None,
    currency: str | None,
    note: str | None,
    image: str | None,
) -> None:
    """Share a card in GROUP: TITLE and URL, optionally a price and a product photo.

    \b
    JSON: {"group_id", "event_id"}
    """
    params: dict[str, Any] = {"group": group, "title": title, "url": url}
    if price is not None:
        try:
            params["price"] = round(float(price) * 100)
        except ValueError:
            raise click.BadParameter(
                "a price is a number such as 19.99", param_hint="--price"
            ) from None
    if currency is not None:
        params["currency"] = currency.upper()
    if note is not None:
        params["note"] = note
    with connected(state) as client:
        if image is not None:
            (params["image"],) = add_files(
                client, (image,), show=not state.json and sys.stderr.isatty()
            )
        result = client.call("groups.share", params, timeout=CALL_TIMEOUT)
    if state.json:
        emit_json(result)
    else:
        say(f"Shared (event {result['event_id'][:8]}).")
