"""Issue 16: what a new user hits with the CLI, against two real running nodes.

Each test names the item of issue 16 it covers. The nodes run on the in-memory network
(the fixture of ``test_cli_rpc``); the commands run through CliRunner over the socket.
"""

from __future__ import annotations

import _thread
import contextlib
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from p2pchat.cli import _passphrase, cli
from p2pchat.client import SyncClient
from p2pchat.events import MessageReceived, event_to_dict
from p2pchat.identity import keystore
from p2pchat.vocabulary import DEPRECATED
from tests.unit.test_cli_groups import _create_and_join
from tests.unit.test_cli_keys import FAST, PASS
from tests.unit.test_cli_rpc import LIMIT, Nodes, nodes, p2p, p2p_json, wait_until

__all__ = ["nodes"]


def test_item14_empty_dm_and_empty_post_get_the_same_clear_error(nodes: Nodes) -> None:
    alice = nodes.home("alice")
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    group = p2p_json(alice, "groups", "create", "Quiet")["group"]["group_id"]
    for command in (("dm", "send", "bob", "   "), ("groups", "post", group, " \t ")):
        result = p2p(alice, *command)
        assert result.exit_code == 2, result.output
        assert "the message is empty: write some text" in result.stderr
    assert p2p_json(alice, "dm", "list")["conversations"] == []
    long = p2p(alice, "dm", "send", "bob", "é" * 9000)
    assert long.exit_code == 2
    assert "18,000 bytes of UTF-8 text, the limit is 16,384 bytes" in long.stderr


def _interrupt_after(home: Path, delay: float, *args: str) -> subprocess.CompletedProcess[str]:
    # Ctrl-C as a shell gives it: a job started with `&` from a non-interactive shell (a
    # CI wrapper, nohup) ignores SIGINT, a child inherits an ignored signal, and Python
    # then keeps ignoring it. A handled SIGINT is reset to the default in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with subprocess.Popen(  # the context closes the pipes whatever happens
            [sys.executable, "-m", "p2pchat.cli", "--home", str(home), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            try:
                if delay:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(delay)
                process.send_signal(signal.SIGINT)
                out, err = process.communicate(timeout=LIMIT)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.3, 0.6, 1.5])
def test_item19_ctrl_c_exits_130_without_a_traceback(nodes: Nodes, delay: float) -> None:
    alice = nodes.home("alice")
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "bob").exit_code == 0
    done = _interrupt_after(alice, delay, "dm", "read", "bob", "--follow")
    if "Traceback" in done.stderr and "p2pchat" not in done.stderr:
        # Under load the signal can land while the interpreter itself starts (runpy,
        # site): no code of ours has run, and Python prints that one itself.
        assert "KeyboardInterrupt" in done.stderr, done.stderr
        return
    assert "Traceback" not in done.stderr, done.stderr
    # 0 s: the signal may come before Python handles it; a shell shows that as 130 too
    assert done.returncode in (130, -signal.SIGINT), (done.returncode, done.stderr)


def test_item19_a_changed_invite_link_is_invalid_at_once(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = p2p_json(alice, "groups", "create", "Vinyl")["group"]["group_id"]
    link = p2p_json(alice, "groups", "invite", group)["link"]
    middle = len(link) // 2
    tampered = link[:middle] + ("A" if link[middle] != "A" else "B") + link[middle + 1 :]
    started = time.monotonic()
    result = p2p(bob, "groups", "join", tampered)
    assert time.monotonic() - started < 2.0
    assert result.exit_code == 2, result.output
    assert "not a valid invite link" in result.stderr
    assert "checksum mismatch" in result.stderr
    assert p2p_json(bob, "groups", "list")["groups"] == []
    assert p2p(bob, "groups", "join", link).exit_code == 0  # the real one still works


def test_item19_passphrase_prompt_says_why_it_asks_again_and_warns_when_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keystore, "DEFAULT_KDF_LIMITS", FAST)
    monkeypatch.setattr(_passphrase, "stdin_is_tty", lambda: True)
    monkeypatch.delenv("P2PCHAT_PASSPHRASE", raising=False)
    home = str(tmp_path / "home")
    typed = "\nx\ny\nx\nx\n"  # empty; then two entries that differ; then "x" twice
    result = CliRunner().invoke(cli, ["--home", home, "keys", "generate"], input=typed)
    assert result.exit_code == 0, result.output
    assert "The passphrase cannot be empty" in result.stderr
    assert "The two entries differ" in result.stderr
    assert "This passphrase is short (1 characters)" in result.stderr
    good = CliRunner().invoke(
        cli, ["--home", str(tmp_path / "other"), "keys", "generate"], input=f"{PASS}\n{PASS}\n"
    )
    assert good.exit_code == 0, good.output
    assert "short" not in good.stderr


def _at_80(home: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli, ["--home", str(home), *args], env={"COLUMNS": "80"}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_item11_tables_fit_80_columns_and_wide_shows_full_ids(nodes: Nodes) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    group = p2p_json(alice, "groups", "create", "Vinyl collectors", "--tag", "vinyl")["group"]
    assert p2p(alice, "contacts", "add", nodes.account("bob"), "--name", "Bob Dylan").exit_code == 0
    assert p2p(bob, "contacts", "add", nodes.account("alice"), "--name", "Alice").exit_code == 0
    p2p_json(alice, "dm", "send", "Bob Dylan", "hi")
    for args in (
        ("groups", "list"),
        ("groups", "members", group["group_id"]),
        ("contacts", "list"),
        ("dm", "list"),
        ("devices", "list"),
    ):
        text = _at_80(alice, *args)
        assert max(len(line) for line in text.splitlines()) <= 80, text
        assert "…" in text
    assert "Vinyl collectors" in _at_80(alice, "groups", "list")  # not one letter per line
    assert group["group_id"][:12] in _at_80(alice, "groups", "list")
    assert nodes.account("bob")[:12] in _at_80(alice, "contacts", "list")
    assert group["group_id"] in _at_80(alice, "groups", "list", "--wide")
    assert nodes.account("bob") in _at_80(alice, "contacts", "list", "--wide")


def test_item9_polls_buys_and_share_cards_show_content_and_tallies(nodes: Nodes) -> None:
    alice = nodes.home("alice")
    group = p2p_json(alice, "groups", "create", "Shop")["group"]["group_id"]
    poll = p2p_json(alice, "groups", "poll", group, "Which colour?", "red", "blue")["event_id"]
    post = p2p_json(alice, "groups", "post", group, "just a post")["event_id"]
    for choices, code, said in (
        (["3"], 2, "this poll has options 1 to 2; there is no option 3"),
        (["1", "2"], 2, "this poll takes one choice"),
    ):
        refused = p2p(alice, "groups", "vote", group, poll[:8], *choices)
        assert (refused.exit_code, said in refused.stderr) == (code, True), refused.output
    not_poll = p2p(alice, "groups", "vote", group, post, "1")
    assert not_poll.exit_code == 10
    assert "not a poll" in not_poll.stderr
    assert p2p(alice, "groups", "vote", group, poll[:8], "2").exit_code == 0
    with SyncClient.connect(home=alice) as client:
        client.call(
            "groups.share",
            {"group": group, "title": "Turntable", "url": "https://example.org/tt",
             "price": 12900, "currency": "EUR", "note": "mint"},
            timeout=LIMIT,
        )  # fmt: skip
        client.call(
            "groups.buy",
            {"group": group, "title": "Record sleeves", "options": ["100 pack"], "quota": 10,
             "deadline": time.time_ns() // 1_000_000 + 3_600_000, "price": 500, "currency": "EUR"},
            timeout=LIMIT,
        )  # fmt: skip
    shown = p2p(alice, "groups", "read", group).stdout
    assert "[poll] Which colour?  1) red: 0  2) blue: 1  (one choice, open until" in shown
    assert "[share] Turntable 129.00 EUR  https://example.org/tt  mint" in shown
    assert "[group buy] Record sleeves 5.00 EUR  0/10 units (open until" in shown


def test_item10_live_comments_from_the_cli_with_media_named_by_file_or_url(
    nodes: Nodes, tmp_path: Path
) -> None:
    alice = nodes.home("alice")
    group = p2p_json(alice, "groups", "create", "Movie night", "--live")["group"]["group_id"]
    film = tmp_path / "film.mp4"
    film.write_bytes(b"\x00frames" * 1000)
    hashed = p2p_json(alice, "groups", "media-hash", str(film))
    assert hashed["media_hash"] == hashlib.blake2b(film.read_bytes(), digest_size=32).hexdigest()
    assert (hashed["mime"], hashed["size"]) == ("video/mp4", 7000)
    posted = p2p(alice, "groups", "live-post", group, str(film), "1:02", "what", "a", "scene")
    assert posted.exit_code == 0, posted.output
    assert posted.stdout.startswith("Commented at 01:02 (event ")
    url = "https://video.example/stream/42"
    p2p_json(alice, "groups", "live-post", group, url, "75.5", "same stream")
    by_file = p2p_json(alice, "groups", "live-read", group, hashed["media_hash"], "--no-fetch")
    assert [(c["offset"], c["text"]) for c in by_file["comments"]] == [(62_000, "what a scene")]
    by_url = p2p_json(alice, "groups", "live-read", group, url, "--no-fetch")
    assert [(c["offset"], c["text"]) for c in by_url["comments"]] == [(75_500, "same stream")]
    bad = p2p(alice, "groups", "live-post", group, str(film), "1:99", "x")
    assert bad.exit_code == 2
    assert "not a position" in bad.stderr
    # Issue 19's spelling: the media named by a file's hash with --media (and --at).
    p2p_json(alice, "groups", "live-post", group, "--media", str(film), "--at", "2:00", "again")
    p2p_json(alice, "groups", "live-post", group, "--media", str(film), "2:05", "and again")
    by_option = p2p_json(alice, "groups", "live-read", group, str(film), "--no-fetch")
    assert [(c["offset"], c["text"]) for c in by_option["comments"]] == [
        (62_000, "what a scene"),
        (120_000, "again"),
        (125_000, "and again"),
    ]
    with SyncClient.connect(home=alice) as client:  # the same hash for RPC clients
        over_rpc = client.call("files.media_hash", {"media": str(film)}, timeout=LIMIT)
        url_hash = client.call("files.media_hash", {"media": url}, timeout=LIMIT)
    assert over_rpc == hashed
    assert (url_hash["media_hash"], url_hash["url"]) == (
        hashlib.blake2b(url.encode(), digest_size=32).hexdigest(),
        url,
    )
    missing = p2p(alice, "groups", "live-post", group, "--media", str(film), "--at", "1:00")
    assert missing.exit_code == 2
    assert "Missing argument" in missing.stderr


def test_item8_contacts_keep_names_unique_and_can_be_renamed_removed_and_verified(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = nodes.home("alice"), nodes.home("bob")
    bob_key = nodes.account("bob")
    assert p2p(alice, "contacts", "add", bob_key, "--name", "bob").exit_code == 0
    again = p2p(alice, "contacts", "add", bob_key, "--name", "robert")
    assert again.exit_code == 2
    assert "already your contact 'bob'" in again.stderr
    carol = "c" * 64
    taken = p2p(alice, "contacts", "add", carol, "--name", "BOB")
    assert taken.exit_code == 2
    assert "another contact is already named 'bob'" in taken.stderr
    assert p2p(alice, "contacts", "add", carol, "--name", "carol").exit_code == 0
    assert p2p(alice, "contacts", "rename", "carol", "bob").exit_code == 2
    assert p2p(alice, "contacts", "rename", "carol", "Caro").exit_code == 0
    assert p2p_json(alice, "dm", "send", "bob", "hi")["message"]["conversation_id"] == (
        f"dm:{bob_key}"
    )

    number = p2p_json(alice, "contacts", "verify", "bob")  # not a terminal, no --yes
    assert number["contact"] is None
    theirs = p2p_json(bob, "contacts", "verify", nodes.account("alice"))["safety_number"]
    assert number["safety_number"] == theirs  # both sides read the same 60 digits
    assert len(theirs.replace(" ", "")) == 60
    monkeypatch.setattr(_passphrase, "stdin_is_tty", lambda: True)
    declined = CliRunner().invoke(cli, ["--home", str(alice), "contacts", "verify", "bob"],
                                  input="n\n")  # fmt: skip
    assert "Not verified" in declined.stdout
    confirmed = CliRunner().invoke(cli, ["--home", str(alice), "contacts", "verify", "bob"],
                                   input="y\n")  # fmt: skip
    assert confirmed.exit_code == 0, confirmed.output
    assert theirs in confirmed.stdout
    [bob_contact] = [
        c for c in p2p_json(alice, "contacts", "list")["contacts"] if c["name"] == "bob"
    ]
    assert bob_contact["verified"] is True
    assert "✓" in p2p(alice, "contacts", "list").stdout

    assert p2p(alice, "contacts", "remove", "Caro").exit_code == 0
    names = [c["name"] for c in p2p_json(alice, "contacts", "list")["contacts"]]
    assert names == ["bob"]
    assert p2p(alice, "contacts", "remove", "Caro").exit_code == 10


def test_item12_names_travel_and_are_marked_until_verified(nodes: Nodes) -> None:
    """Alice and Bob run with --display-name Alice / Bob. The name travels inside their
    (end-to-end authenticated) messages; each side shows one label everywhere: "~Bob"
    while it is only Bob's claim, "bob?" once named by us but not verified, "bob" after
    the safety numbers were compared."""
    alice, bob = nodes.home("alice"), nodes.home("bob")
    alice_key, bob_key = nodes.account("alice"), nodes.account("bob")
    evil = "Eve\x1b[2J\u202e"
    assert p2p(bob, "dm", "send", alice_key, "hello from", evil).exit_code == 0

    def request() -> dict[str, object] | None:
        found = p2p_json(alice, "contacts", "requests")["contacts"]
        return found[0] if found and found[0]["claimed_name"] else None

    wait_until(lambda: request() is not None)
    asked = request()
    assert asked is not None
    assert (asked["name"], asked["claimed_name"], asked["label"]) == (
        asked["fingerprint"][:9],  # type: ignore[index]
        "Bob",
        "~Bob",
    )
    assert "~Bob" in p2p(alice, "contacts", "requests").stdout
    assert "~Bob" in p2p(alice, "dm", "list").stdout
    read = p2p(alice, "dm", "read", bob_key).stdout
    assert "~Bob: hello from Eve\\x1b[2J\\u202e" in read  # the text inert, the name too
    [conversation] = p2p_json(alice, "dm", "list")["conversations"]
    assert conversation["label"] == "~Bob"

    # Named by Alice: her name, marked until verified; his own claim stays in --json.
    assert p2p(alice, "contacts", "accept", bob_key).exit_code == 0
    assert p2p(alice, "contacts", "rename", bob_key, "bob").exit_code == 0
    [contact] = p2p_json(alice, "contacts", "list")["contacts"]
    assert (contact["name"], contact["claimed_name"], contact["label"]) == ("bob", "Bob", "bob?")
    assert "bob?: hello from" in p2p(alice, "dm", "read", "bob").stdout
    monkey = pytest.MonkeyPatch()
    with monkey.context() as m:
        m.setattr(_passphrase, "stdin_is_tty", lambda: True)
        verified = CliRunner().invoke(cli, ["--home", str(alice), "contacts", "verify", "bob"],
                                      input="y\n")  # fmt: skip
    assert verified.exit_code == 0, verified.output
    [contact] = p2p_json(alice, "contacts", "list")["contacts"]
    assert contact["label"] == "bob"
    assert "bob: hello from" in p2p(alice, "dm", "read", "bob").stdout

    # In a group the same labels: Bob's posts in Alice's terminal say "bob"; Alice, who
    # is not Bob's contact by name, is "~Alice" to him once her DM carried her name.
    group = _create_and_join(nodes)
    p2p_json(bob, "groups", "post", group, "a post")
    wait_until(lambda: "bob  " in p2p(alice, "groups", "members", group).stdout)
    wait_until(lambda: "bob: a post" in p2p(alice, "groups", "read", group).stdout)
    assert p2p(alice, "dm", "send", "bob", "hi bob").exit_code == 0
    wait_until(
        lambda: any(c["label"] == "~Alice" for c in p2p_json(bob, "contacts", "list")["contacts"])
    )
    p2p_json(alice, "groups", "post", group, "from alice")
    wait_until(lambda: "~Alice: from alice" in p2p(bob, "groups", "read", group).stdout)
    members = p2p_json(bob, "groups", "members", group)["members"]
    assert [m["label"] for m in members if not m["me"]] == ["~Alice"]


def test_item18_follow_json_is_json_lines(nodes: Nodes) -> None:
    alice = nodes.home("alice")
    group = p2p_json(alice, "groups", "create", "Lines")["group"]["group_id"]
    p2p_json(alice, "groups", "post", group, "before")
    done = threading.Event()

    def keep_posting() -> None:
        deadline = time.monotonic() + LIMIT
        with SyncClient.connect(home=alice) as client:
            while not done.wait(0.1):
                if time.monotonic() > deadline:
                    _thread.interrupt_main()
                    return
                client.call("groups.post", {"group": group, "text": "ping"}, timeout=LIMIT)

    poster = threading.Thread(target=keep_posting, daemon=True)
    poster.start()
    try:
        result = p2p(alice, "groups", "read", group, "--follow", "--count", "1", "--json")
    finally:
        done.set()
        poster.join(LIMIT)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    objects = [json.loads(line) for line in lines]  # every line is one whole object
    assert objects[0]["group_id"] == group
    assert objects[0]["messages"][0]["text"] == "before"
    assert [o["event"]["type"] for o in objects[1:]] == ["group.message"]
    event = objects[1]["event"]
    assert (event["sent_at"], event["author"]) == (event["ts"], nodes.account("alice"))


SPEC = Path(__file__).resolve().parents[2] / "protocol-spec"


def test_item18_one_vocabulary_in_results_events_clients_and_docs(nodes: Nodes) -> None:
    """The canonical words (p2pchat.vocabulary) in every shape rpc.schema.json describes,
    the older names beside them with the same value, and the same table in rpc.md."""
    alice, bob = nodes.home("alice"), nodes.home("bob")
    alice_key, bob_key = nodes.account("alice"), nodes.account("bob")
    shapes = json.loads((SPEC / "schemas" / "rpc.schema.json").read_text())["$defs"]

    def check(shape: str, record: dict[str, object]) -> None:
        properties = shapes[shape]["properties"]
        assert set(record) == set(properties), shape
        for key, spec in properties.items():
            if spec.get("deprecated"):
                assert record[key] == record[DEPRECATED[key]], (shape, key)

    assert p2p(bob, "dm", "send", alice_key, "hello").exit_code == 0
    wait_until(lambda: bool(p2p_json(alice, "dm", "list")["conversations"]))  # with the message
    group = p2p_json(alice, "groups", "create", "Words")["group"]["group_id"]
    p2p_json(alice, "groups", "post", group, "a post")
    with SyncClient.connect(home=alice) as client:
        hello = dict(client.info.node)  # rpc.hello's IDENTITY
        check("identity", hello)
        assert hello["account"] == alice_key
        info = client.call("node.info", timeout=LIMIT)  # IDENTITY and listen_addrs
        assert {k: info[k] for k in hello} == hello
        [message] = client.call("dm.history", {"conversation": bob_key}, timeout=LIMIT)
        check("message", message)
        assert message["author"] == bob_key
        [contact] = client.call("contacts.list", timeout=LIMIT)
        check("contact", contact)
        [post] = client.call("groups.history", {"group": group}, timeout=LIMIT)
        check("group_message", post)
    # The CLI's --json is the RPC's result, so it speaks the same words.
    [shown] = p2p_json(alice, "dm", "read", bob_key)["messages"]
    check("message", shown)
    event = event_to_dict(
        MessageReceived(
            conversation_id="dm:" + bob_key,
            message_id=bytes(16),
            sender=bytes.fromhex(bob_key),
            seq=1,
            content_type="p2pchat/text",
            text="hi",
            sent_at=1,
            received_at=2,
        )
    )
    assert event["author"] == event["sender"] == bob_key
    documented = (SPEC / "rpc.md").read_text()
    for old, new in DEPRECATED.items():
        assert f"| `{old}` | `{new}` |" in documented
