"""``p2pchat profile``: your display name and "about" text, and the profiles of others."""

from __future__ import annotations

from typing import Any

import click

from ._client import call
from ._output import emit_json, message_body, one_line, say
from ._state import CliState, json_option, pass_state

__all__ = ["profile"]


@click.group()
def profile() -> None:
    """Your profile (a display name and a short "about"), sent to your contacts and the
    members of your groups; theirs, as they sent it (needs a running node).

    With --json, a profile is {"account", "name", "about", "updated_at"}.
    """


def _show(found: dict[str, Any]) -> None:
    if found["name"] is None:
        say("No profile yet.")
        return
    say(f"Name:  {one_line(found['name'])}")
    if found["about"]:
        say(f"About: {message_body(found['about'], indent=7)}")


@profile.command("set")
@click.option("--name", help="Your display name (1 to 64 bytes).")
@click.option("--about", help="A short text about you (at most 280 bytes).")
@json_option
@pass_state
def set_(state: CliState, name: str | None, about: str | None) -> None:
    """Set your name and/or about text; your contacts and group members get it.

    \b
    JSON: {"profile": profile}
    """
    if name is None and about is None:
        raise click.UsageError("give --name, --about or both")
    params = {k: v for k, v in (("name", name), ("about", about)) if v is not None}
    found = call(state, "profile.set", params)
    if state.json:
        emit_json({"profile": found})
    else:
        say("Profile set; your contacts and group members will get it.")
        _show(found)


@profile.command()
@click.argument("account", required=False)
@json_option
@pass_state
def show(state: CliState, account: str | None) -> None:
    """Show your profile, or the one ACCOUNT (a contact's name or key) sent you.

    \b
    JSON: {"profile": profile}
    """
    found = call(state, "profile.show", {"account": account} if account else {})
    if state.json:
        emit_json({"profile": found})
    else:
        _show(found)
