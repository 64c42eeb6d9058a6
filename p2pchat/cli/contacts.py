"""``p2pchat contacts``: people we talk to, through the running node's RPC API.

A CONTACT argument is an account key (64 hex digits, what `p2pchat keys show` prints on
their side) or the display name of exactly one contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from ..qr import contact_link
from ._client import call
from ._output import emit_json, one_line, say, show_qr, show_table
from ._state import CliState, json_option, pass_state, wide_option

__all__ = ["contacts", "contact_rows"]

_STATES = ("requested_in", "requested_out", "accepted", "declined", "blocked")


@click.group()
def contacts() -> None:
    """Manage contacts (needs a running node: `p2pchat node run`).

    CONTACT is an account key (64 hex digits) or the display name of one contact.
    With --json, a contact is {"account", "fingerprint", "name", "claimed_name",
    "label", "state", "verified", "created_at", "updated_at"} (keys in hex, times in
    ms since the Unix epoch). "name" is yours for them, "claimed_name" the one they
    give themselves, "label" how they are shown: "Bob" (verified), "Bob?" (not
    verified yet), "~Bob" (only their own claim). "verified" is set by
    `p2pchat contacts verify` once you compared safety numbers.
    """


def contact_rows(found: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Label (README "Names"), state, verified mark and account key (the fingerprint
    is in ``--json``)."""
    return [
        (
            c["label"],
            c["state"].replace("_", " "),
            "✓" if c["verified"] else "",
            c["account"],
        )
        for c in found
    ]


def _show_list(state: CliState, found: list[dict[str, Any]], *, empty: str) -> None:
    if state.json:
        emit_json({"contacts": found})
        return
    columns = ("Name", "State", "Verified", "Account key")
    show_table(None, columns, contact_rows(found), empty=empty, no_wrap=("Account key",))


def _show_one(state: CliState, contact: dict[str, Any], verb: str) -> None:
    if state.json:
        emit_json({"contact": contact})
    else:
        say(f"{one_line(contact['name'])} ({contact['fingerprint']}): {verb}.")


@contacts.command("list")
@click.option("--state", "only", type=click.Choice(_STATES), help="Only contacts in this state.")
@wide_option
@json_option
@pass_state
def list_(state: CliState, only: str | None) -> None:
    """List contacts by name.

    \b
    JSON: {"contacts": [contact, ...]}
    """
    found = call(state, "contacts.list", {"state": only} if only else {})
    _show_list(state, found, empty="No contacts yet. Add one with `p2pchat contacts add`.")


@contacts.command()
@wide_option
@json_option
@pass_state
def requests(state: CliState) -> None:
    """List strangers who wrote to you and wait for your consent.

    Accept with `p2pchat contacts accept CONTACT`, or decline or block them.

    \b
    JSON: {"contacts": [contact, ...]}
    """
    found = call(state, "contacts.requests")
    _show_list(state, found, empty="No contact requests.")


@contacts.command()
@click.argument("address")
@click.option("--name", help="The name you know them by (default: their fingerprint's start).")
@json_option
@pass_state
def add(state: CliState, address: str, name: str | None) -> None:
    """Add a contact by account key (64 hex digits), contact link (p2pchat-contact:...,
    what `p2pchat contacts share` prints) or peer id (12D3KooW...).

    Adding is consent: they may write to you, and you to them.

    \b
    JSON: {"contact": contact}
    """
    params: dict[str, Any] = {"address": address}
    if name is not None:
        params["name"] = name
    _show_one(state, call(state, "contacts.add", params), "added")


@contacts.command()
@click.option("--qr", is_flag=True, help="Also draw the link as a QR code to scan.")
@json_option
@pass_state
def share(state: CliState, qr: bool) -> None:
    """Print your contact link: others add you with `p2pchat contacts add LINK` (or scan
    it with --qr). It holds only your account key, which is public.

    \b
    JSON: {"link", "account", "fingerprint"}
    """
    info = call(state, "node.info")
    link = contact_link(str(info["account"]))
    if state.json:
        emit_json({"link": link, "account": info["account"], "fingerprint": info["fingerprint"]})
        return
    click.echo(link)
    if qr:
        show_qr(link)
    say(f"Fingerprint: {info['fingerprint']} (compare it when you meet)")


def _state_command(verb: str, done: str, summary: str) -> click.Command:
    @json_option
    @pass_state
    def command(state: CliState, contact: str) -> None:
        _show_one(state, call(state, f"contacts.{verb}", {"contact": contact}), done)

    command.__doc__ = f'{summary}\n\n\b\nJSON: {{"contact": contact}}'
    return click.command(verb)(click.argument("contact")(command))


@contacts.command()
@click.argument("contact")
@click.argument("name")
@json_option
@pass_state
def rename(state: CliState, contact: str, name: str) -> None:
    """Call CONTACT by NAME from now on (no other contact may have it).

    \b
    JSON: {"contact": contact}
    """
    found = call(state, "contacts.rename", {"contact": contact, "name": name})
    _show_one(state, found, "renamed")


@contacts.command()
@click.argument("contact")
@click.option("--yes", is_flag=True, help="The numbers matched: record it without asking.")
@click.option("--undo", is_flag=True, help="Take a verification back.")
@json_option
@pass_state
def verify(state: CliState, contact: str, yes: bool, undo: bool) -> None:
    """Compare your safety number with CONTACT's, and record that it matched.

    Both of you run this command and read the 60 digits to each other, in person or
    on a call: if they match, nobody sits between you. Without --yes, a terminal
    asks; in a script, --yes records it (after you compared the numbers).

    \b
    JSON: {"safety_number", "contact": contact (null when nothing was recorded)}
    """
    from ._passphrase import stdin_is_tty

    number = call(state, "contacts.safety_number", {"contact": contact})["safety_number"]
    if undo or yes:
        confirmed = True
    elif state.json or not stdin_is_tty():
        if state.json:
            emit_json({"safety_number": number, "contact": None})  # nothing recorded
        else:
            say(f"Safety number: {number}")
            say("Compare it with theirs; then run this again with --yes to record the match.")
        return
    else:
        say(f"Safety number with {one_line(contact)}:\n  {number}")
        confirmed = click.confirm("Do the numbers match exactly?", default=False, err=True)
    if not confirmed:
        say("Not verified. If the numbers differ, someone may be impersonating them.")
        return
    params = {"contact": contact, "verified": not undo}
    found_contact = call(state, "contacts.verify", params)
    if state.json:
        emit_json({"safety_number": number, "contact": found_contact})
    else:
        _show_one(state, found_contact, "no longer verified" if undo else "verified")


for _verb, _done, _summary in (
    ("accept", "accepted", "Accept a contact request: they may write to you from now on."),
    ("decline", "declined", "Decline a contact request (their messages fail with that reason)."),
    ("block", "blocked", "Block an account: its messages are dropped unread."),
    ("unblock", "unblocked", "Unblock an account; it becomes an accepted contact again."),
    ("remove", "removed", "Forget a contact (the conversation stays; they become a stranger)."),
):
    contacts.add_command(_state_command(_verb, _done, _summary))
