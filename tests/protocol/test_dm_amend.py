"""Reactions, edits and deletions of direct messages folded over a conversation."""

from __future__ import annotations

from p2pchat.protocol.content import Content, DeleteBody, EditBody, ReactBody
from p2pchat.protocol.dm_amend import FoldInput, amendment_of, fold_amendments

ALICE, BOB = b"a" * 32, b"b" * 32


def _id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def text(n: int, who: bytes, words: str) -> FoldInput:
    return FoldInput(_id(n), who, Content(type="p2pchat/text", body={}, text=words))


def react(n: int, who: bytes, target: int, emoji: str, *, on: bool = True) -> FoldInput:
    body = ReactBody(target=_id(target), emoji=emoji, on=on).to_value()
    return FoldInput(_id(n), who, Content(type="p2pchat/react", body=body, text="r"))


def edit(n: int, who: bytes, target: int, words: str) -> FoldInput:
    body = EditBody(target=_id(target)).to_value()
    return FoldInput(_id(n), who, Content(type="p2pchat/edit", body=body, text=words))


def delete(n: int, who: bytes, target: int) -> FoldInput:
    body = DeleteBody(target=_id(target)).to_value()
    return FoldInput(_id(n), who, Content(type="p2pchat/delete", body=body, text="d"))


def test_reactions_switch_per_account_and_emoji() -> None:
    folded, amendments = fold_amendments(
        [
            text(1, ALICE, "hi"),
            react(2, BOB, 1, "👍"),
            react(3, ALICE, 1, "👍"),
            react(4, BOB, 1, "👍"),  # twice by one account counts once
            react(5, ALICE, 1, "👍", on=False),
            react(6, BOB, 1, "🎉"),
        ]
    )
    assert folded[_id(1)].counts() == {"👍": 1, "🎉": 1}
    assert amendments == {_id(n) for n in range(2, 7)}


def test_only_the_sender_edits_or_deletes_their_message() -> None:
    folded, _ = fold_amendments(
        [
            text(1, ALICE, "hi"),
            text(2, BOB, "hello"),
            edit(3, BOB, 1, "Bob rewrites Alice"),  # ignored: not Bob's message
            delete(4, BOB, 1),  # ignored too
            edit(5, ALICE, 1, "hi there"),
            edit(6, BOB, 2, "hello!"),
            delete(7, BOB, 2),
            edit(8, BOB, 2, "after the deletion"),  # a deleted message stays deleted
        ]
    )
    assert (folded[_id(1)].text, folded[_id(1)].edited, folded[_id(1)].deleted) == (
        "hi there",
        True,
        False,
    )
    assert folded[_id(2)].deleted
    assert folded[_id(2)].text is None


def test_an_amendment_before_its_target_applies_and_unknown_targets_are_ignored() -> None:
    folded, amendments = fold_amendments(
        [edit(2, ALICE, 1, "fixed"), text(1, ALICE, "fxed"), react(3, BOB, 99, "x")]
    )
    assert folded[_id(1)].text == "fixed"
    assert _id(99) not in folded
    assert amendments == {_id(2), _id(3)}


def test_a_malformed_amendment_is_a_message() -> None:
    bad = Content(type="p2pchat/react", body={"to": b"short", "emoji": "x", "on": True}, text="?")
    empty_edit = Content(type="p2pchat/edit", body={"to": _id(1)}, text="  ")
    assert amendment_of(bad) is None
    assert amendment_of(empty_edit) is None
    folded, amendments = fold_amendments([text(1, ALICE, "a"), FoldInput(_id(2), BOB, bad)])
    assert folded == {}
    assert amendments == set()
