"""One set of words for the RPC results and events, the CLI's ``--json``, the Python API,
the clients and the docs (protocol-spec/rpc.md "Vocabulary" is the same table).

The canonical keys:

* ``account``: a person, by account key (hex in results); in a removal notice, whom it
  removed;
* ``device``: a device key (the author's device, for a message);
* ``author``: the account that wrote a message or did an event (a DM's sender too);
* ``sent_at``: the author's clock when it was written, ms since the Unix epoch;
* ``received_at``: our clock when it arrived;
* ``name``: the name *we* gave someone or something; ``claimed_name``: the one they give
  themselves; ``label``: how to show a person (:func:`p2pchat.text.person_label`).

Older results used other words for some of them. Within protocol version 1 keys are
added, never removed (rpc.md §2), so those stay, deprecated, beside the canonical ones
with the same value: :data:`DEPRECATED` maps each to its canonical key. New code reads
the canonical keys only.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final

__all__ = ["CANONICAL", "DEPRECATED", "add_deprecated", "add_canonical"]

#: The canonical keys that replaced older names, with what they mean.
CANONICAL: Final[dict[str, str]] = {
    "account": "a person, by account key",
    "device": "a device key (a message's: its author's device)",
    "author": "the account that wrote a message or did an event",
    "sent_at": "the author's clock when it was written, ms since the Unix epoch",
}

#: Deprecated key -> the canonical key carrying the same value (rpc.md "Vocabulary").
DEPRECATED: Final[dict[str, str]] = {
    "sender": "author",  # dm MESSAGE, dm.received
    "sender_device": "device",  # dm MESSAGE
    "ts": "sent_at",  # group messages, notices, live comments, group.message
    "account_key": "account",  # IDENTITY (rpc.hello, node.info, node.status)
    "device_key": "device",  # IDENTITY
}


def add_deprecated(record: MutableMapping[str, Any], *old: str) -> MutableMapping[str, Any]:
    """Add the deprecated keys ``old`` to a record built with canonical keys."""
    for key in old:
        record[key] = record[DEPRECATED[key]]
    return record


def add_canonical(record: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the canonical key beside each deprecated key a record has (an event whose
    Python fields keep an older name), without replacing a key already there."""
    for key in [k for k in record if k in DEPRECATED]:
        record.setdefault(DEPRECATED[key], record[key])
    return record
