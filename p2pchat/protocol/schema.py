"""The CDDL files of ``protocol-spec/schemas/``, generated from the message classes.

The classes are the single source of truth: this module writes their CDDL, the vector
generator commits it, and a test checks that the committed files equal a fresh
generation and that every valid vector validates against them.
"""

from __future__ import annotations

from collections.abc import Iterable

from .blob import BLOB_FRAMES, Manifest
from .codec import MAX_UINT, Struct, cddl_rule, struct_closure
from .content import KNOWN_TYPES, Content
from .device_history import HISTORY_MESSAGES, HistoryChunkContent
from .device_link import LINK_MESSAGES, GrantContent
from .device_list import DeviceListNotice
from .device_sync import LinkSync, SyncContent
from .dm_messages import DM_KINDS, DmPlaintext
from .envelope import Envelope
from .group_events import EVENT_KINDS, GroupEvent, InnerEvent
from .kinded import KindedFrame, KindedFrames
from .live_messages import LIVE_KINDS
from .mailbox import MAILBOX_FRAMES
from .profile import ProfileBody
from .records import RECORD_BODIES, Record
from .sync_messages import SYNC_KINDS

__all__ = ["schema_files", "full_schema", "kind_rule"]

_HEADER = """\
; p2pchat wire protocol v1 -- {title}
; GENERATED from p2pchat/protocol/*.py by protocol-spec/vectors/generate.py: do not edit.
; Read with wire.md. Byte strings called "CBOR of X" hold the canonical encoding of X.
; Every map also admits unknown text keys ("* tstr => any"): they are ignored.
"""


def kind_rule(kind: str) -> str:
    """The CDDL rule name of a message kind's payload, e.g. ``dm.ack`` -> ``dm-ack``."""
    return kind.replace(".", "-")


def _rules(structs: Iterable[type[Struct]], done: set[type[Struct]]) -> list[str]:
    out = []
    for cls in struct_closure(list(structs)):
        if cls not in done:
            done.add(cls)
            out.append(cddl_rule(cls))
    return out


def _kind_payload_rules(
    kinds: Iterable[type[Struct]], done: set[type[Struct]], *, prefix: str = ""
) -> list[str]:
    out = []
    for cls in kinds:
        kind = cls.KIND  # type: ignore[attr-defined]
        out.append(cddl_rule(cls, name=prefix + kind_rule(kind)))
        done.add(cls)
        out.extend(_rules([cls], done))
    return out


def _kinded_rules(frames: KindedFrames, rule: str, done: set[type[Struct]]) -> list[str]:
    """A ``{v, k, p}`` frame family: the choice of its kinds, one frame rule per kind
    (``k`` fixed, ``p`` that kind's payload), and the payload rules."""
    names = {kind: f"{rule}-{kind_rule(kind)}" for kind in frames.kinds}
    return [
        _choice(rule, names.values()),
        *[
            cddl_rule(
                frames.frame,
                name=names[kind],
                fixed={"k": f'"{kind}"', "p": f"bstr .cbor {kind_rule(kind)}"},
            )
            for kind in frames.kinds
        ],
        *_kind_payload_rules(frames.kinds.values(), done),
    ]


def _choice(name: str, alternatives: Iterable[str]) -> str:
    return f"{name} = " + "\n  / ".join(alternatives)


def _link_frames() -> list[type[Struct]]:
    return [*LINK_MESSAGES.values(), LinkSync]


def schema_files() -> dict[str, str]:
    """File name (under ``protocol-spec/schemas/``) -> CDDL text."""
    done: set[type[Struct]] = {Envelope, GroupEvent, Record, KindedFrame}
    files: dict[str, list[str]] = {}

    common = _rules([Content, *KNOWN_TYPES.values(), ProfileBody, DeviceListNotice], done)
    files["common.cddl"] = [
        f"uint53 = 0..{MAX_UINT}  ; every integer stays within 2^53 - 1 (JSON/JS safe)",
        *common,
    ]

    dm = [*DM_KINDS, *SYNC_KINDS, *LIVE_KINDS]
    env_variants = []
    for cls in dm:
        kind = cls.KIND  # type: ignore[attr-defined]
        name = f"envelope-{kind_rule(kind)}"
        env_variants.append(
            cddl_rule(
                Envelope, name=name, fixed={"k": f'"{kind}"', "p": f"bstr .cbor {kind_rule(kind)}"}
            )
        )
    files["envelope.cddl"] = [
        _choice("envelope", [f"envelope-{kind_rule(c.KIND)}" for c in dm]),  # type: ignore[attr-defined]
        *env_variants,
        *_kind_payload_rules(DM_KINDS, done),
        *_rules([DmPlaintext], done),
        *_kind_payload_rules(SYNC_KINDS, done),
        *_kind_payload_rules(LIVE_KINDS, done),
    ]

    ev_variants = []
    for kind in EVENT_KINDS:
        name = f"event-{kind_rule(kind)}"
        fixed: dict[str, str | None] = {"k": f'"{kind}"', "b": f"body-{kind_rule(kind)}"}
        if kind == "genesis":
            fixed.update({"g": None, "prev": None, "seq": "1", "lt": "1", "deps": "[]"})
        ev_variants.append(cddl_rule(GroupEvent, name=name, fixed=fixed, required=frozenset({"g"})))
    inner = [
        cddl_rule(
            InnerEvent,
            name=f"inner-{kind_rule(k)}",
            fixed={"k": f'"{k}"', "b": f"body-{kind_rule(k)}"},
        )
        for k in EVENT_KINDS
        if k not in ("genesis", "sealed", "skey.dist")
    ]
    files["group.cddl"] = [
        _choice("group-event", [f"event-{kind_rule(k)}" for k in EVENT_KINDS]),
        *ev_variants,
        _choice(
            "inner-event",
            [
                f"inner-{kind_rule(k)}"
                for k in EVENT_KINDS
                if k not in ("genesis", "sealed", "skey.dist")
            ],
        ),
        *inner,
        *_kind_payload_rules(EVENT_KINDS.values(), done, prefix="body-"),
    ]

    rec_variants = []
    for ns, body in RECORD_BODIES.items():
        rec_variants.append(
            cddl_rule(
                Record, name=f"record-{ns}", fixed={"ns": f'"{ns}"', "body": body.cddl_name()}
            )
        )
    files["records.cddl"] = [
        _choice("record", [f"record-{ns}" for ns in RECORD_BODIES]),
        *rec_variants,
        *_rules(RECORD_BODIES.values(), done),
    ]

    files["mailbox.cddl"] = _kinded_rules(MAILBOX_FRAMES, "mailbox-frame", done)
    files["devices.cddl"] = [
        _choice("link-message", [c.cddl_name() for c in _link_frames()]),
        *_rules([*LINK_MESSAGES.values(), GrantContent, LinkSync, SyncContent], done),
        _choice("history-message", [c.cddl_name() for c in HISTORY_MESSAGES]),
        *_rules([*HISTORY_MESSAGES, HistoryChunkContent], done),
    ]
    files["blob.cddl"] = [
        *_kinded_rules(BLOB_FRAMES, "blob-frame", done),
        *_rules([Manifest], done),
    ]
    titles = {
        "devices.cddl": "device linking and history (devices.md)",
        "common.cddl": "content and shared structures",
        "envelope.cddl": "signed envelope, direct messages, sync",
        "group.cddl": "group log events",
        "records.cddl": "DHT records",
        "mailbox.cddl": "mailbox (store-and-forward)",
        "blob.cddl": "encrypted blobs (attachments)",
    }
    return {
        name: _HEADER.format(title=titles[name]) + "\n" + "\n\n".join(rules) + "\n"
        for name, rules in files.items()
    }


def full_schema(root: str) -> str:
    """Every file concatenated under a first rule ``root`` (what a CDDL tool validates)."""
    return f"start = {root}\n\n" + "\n".join(schema_files().values())
