"""ContentFold.clone is copy-on-write: a clone and its source share messages until one
of them edits, deletes or reacts, and neither ever sees the other's later changes."""

from __future__ import annotations

from p2pchat.protocol.content import Content
from p2pchat.protocol.group_content import ContentFold, EventRef, GroupView
from p2pchat.protocol.group_events import Delete, Edit, Post, Reaction

ALICE, BOB = b"\xa1" * 32, b"\xb0" * 32


def ref(n: int, account: bytes = ALICE) -> EventRef:
    return EventRef(event_id=bytes([n]) * 32, account=account, device=account, ts=1_000 + n)


def text(value: str) -> Content:
    return Content(type="p2pchat/text", body={}, text=value)


def snapshot(view: GroupView) -> list[tuple[str, bool, bool, dict[str, frozenset[bytes]]]]:
    return [
        ("" if m.content is None else m.content.text, m.edited, m.deleted, dict(m.reactions))
        for m in view.messages
    ]


def react(n: int, emoji: str) -> Reaction:
    return Reaction(target=ref(n).event_id, emoji=emoji, on=True)


def fold_with_posts() -> ContentFold:
    fold = ContentFold(slow_ms=0, post_role="member")
    for n in (1, 2, 3):
        assert fold.apply(ref(n), "post", Post(content=text(f"post {n}")), "member")
    assert fold.apply(ref(4, BOB), "react", react(1, "+1"), "member")
    return fold


def mutate(fold: ContentFold) -> None:
    assert fold.apply(ref(10), "edit", Edit(target=ref(1).event_id, content=text("v2")), "member")
    assert fold.apply(ref(11), "delete", Delete(target=ref(2).event_id), "member")
    assert fold.apply(ref(12), "react", react(1, "+1"), "member")
    assert fold.apply(ref(13), "react", react(3, "*"), "member")


def test_changes_to_the_source_after_a_clone_do_not_reach_the_clone() -> None:
    source = fold_with_posts()
    before = snapshot(source.view())
    clone = source.clone()
    mutate(source)
    assert snapshot(clone.view()) == before
    assert snapshot(source.view()) != before


def test_changes_to_a_clone_do_not_reach_its_source_or_a_second_clone() -> None:
    source = fold_with_posts()
    before = snapshot(source.view())
    first, second = source.clone(), source.clone()
    mutate(first)
    assert snapshot(source.view()) == before
    assert snapshot(second.view()) == before
    mutate(second)
    assert snapshot(first.view()) == snapshot(second.view())


def test_a_mutated_clone_matches_a_fold_that_never_cloned() -> None:
    plain = fold_with_posts()
    mutate(plain)
    source = fold_with_posts()
    source.clone()
    clone = source.clone()
    mutate(clone)
    mutate(source)
    assert snapshot(clone.view()) == snapshot(plain.view()) == snapshot(source.view())
    reactions = dict(plain.view().messages[0].reactions)
    assert reactions == {"+1": frozenset({ALICE, BOB})}
