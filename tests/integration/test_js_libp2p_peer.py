"""A foreign libp2p implementation (js-libp2p, ``tests/interop/js_peer``) against real
p2pchat nodes on 127.0.0.1, so libp2p-level interoperability cannot silently break.

The JavaScript peer is written from ``protocol-spec/`` alone. It dials node A (TCP, Noise,
Yamux), joins its Kademlia DHT as a client, fetches A's prekey record (checking it with
the validator of wire.md §10 and the bundle with crypto.md §4) and the group's record,
subscribes to an open public group's gossipsub topic and verifies every post it receives
(envelope signature, run authentication of wire.md §9.1), then joins the group and posts.
Both p2pchat nodes must accept the post (A from the JavaScript peer, B through A's
gossip) and show it; the JavaScript checks of the tag-folding and invite vectors run too.

Its npm dependencies are installed once with ``npm ci`` from the committed lockfile into
``.cache/js-peer`` (gitignored; reinstalled only when the lockfile changes). Node.js and
npm are required: without them, or without the npm registry, the test fails loudly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import nacl.utils
import pytest
import trio

from p2pchat.config import DeliveryConfig, NodeConfig
from p2pchat.identity.keystore import UnlockedIdentity
from p2pchat.net.config import NetConfig
from p2pchat.node import Node

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "interop" / "js_peer"
CACHE = ROOT / ".cache" / "js-peer"
STAMP = CACHE / "node_modules" / ".p2pchat-lock-sha256"
FAST = DeliveryConfig(retry_initial_ms=200, retry_max_ms=1_000, ack_timeout_ms=3_000)
JS_TIMEOUT_S = 60


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required for the js-libp2p interop test (Node.js 20+ and npm)")
    return path


@pytest.fixture(scope="module")
def js_peer() -> Path:
    """The JavaScript peer with its dependencies installed as the lockfile says."""
    CACHE.mkdir(parents=True, exist_ok=True)
    lock = (SOURCE / "package-lock.json").read_bytes()
    digest = hashlib.sha256(lock).hexdigest()
    if not (STAMP.exists() and STAMP.read_text().strip() == digest):
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(SOURCE / name, CACHE / name)
        done = subprocess.run(
            [_tool("npm"), "ci", "--no-audit", "--no-fund"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed (is the npm registry reachable?):\n{done.stderr[-4000:]}")
        STAMP.write_text(digest + "\n")
    for script in SOURCE.glob("*.mjs"):  # the sources are the repo's; only deps are cached
        shutil.copy2(script, CACHE / script.name)
    return CACHE


def test_js_checks_the_tag_and_invite_vectors(js_peer: Path) -> None:
    vectors = ROOT / "protocol-spec" / "vectors" / "groups"
    done = subprocess.run(
        [_tool("node"), "check_vectors.mjs", str(vectors)],
        cwd=js_peer,
        capture_output=True,
        text=True,
        timeout=JS_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tags"] >= 10
    assert report["invites"] >= 1


def _identity() -> UnlockedIdentity:
    return UnlockedIdentity.generate(rng=nacl.utils.random, now=time.time_ns() // 1_000_000)


def _config(home: Path, bootstrap: tuple[str, ...] = ()) -> NodeConfig:
    net = NetConfig(listen_hosts=("127.0.0.1",), port=0, bootstrap=bootstrap)
    return NodeConfig(home=home, net=net, delivery=FAST, rpc=False)


class _JsOutput:
    """The JavaScript peer's JSON lines, read as they come."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self._buffer = b""
        self.lines: list[dict[str, Any]] = []

    async def next_step(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = await self._stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"the js peer exited; it said: {self.lines}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        step: dict[str, Any] = json.loads(line)
        self.lines.append(step)
        if step["step"] == "error":
            raise AssertionError(f"the js peer failed: {step['message']}")
        return step

    async def wait_for(self, name: str) -> dict[str, Any]:
        while True:
            step = await self.next_step()
            if step["step"] == name:
                return step


async def test_a_js_libp2p_peer_reads_records_follows_gossip_and_posts(
    js_peer: Path, tmp_path: Path
) -> None:
    with trio.fail_after(JS_TIMEOUT_S + 30):
        a = Node(_config(tmp_path / "a"), _identity())
        async with a:
            b = Node(_config(tmp_path / "b", (a.listen_addrs[0],)), _identity())
            async with b:
                await a.wait_published()
                group = await a.create_group("Interop", tags=("interop",), join="open")
                await b.join_group(await a.invite(group))
                while len(a.group_state(group).members) < 2:  # noqa: ASYNC110 - node state
                    await trio.sleep(0.05)
                args = {
                    "bootstrap": a.listen_addrs[0],  # ends in /p2p/<peer id>
                    "group": group.hex(),
                    "text": "hello from js-libp2p",
                    "expect_posts": 1,
                    "timeout_ms": JS_TIMEOUT_S * 1000,
                }
                async with trio.open_nursery() as nursery:
                    process = await nursery.start(
                        _run_js, [_tool("node"), "peer.mjs", json.dumps(args)], js_peer
                    )
                    out = _JsOutput(process)
                    prekeys = await out.wait_for("prekeys")
                    assert prekeys["account"] == a.account_key.hex()
                    info = await out.wait_for("group")
                    assert info == {
                        "step": "group",
                        "name": "Interop",
                        "kind": "public",
                        "join": "open",
                    }
                    await out.wait_for("subscribed")
                    # Post until the js peer verified one (it may join A's mesh a heartbeat late).
                    verified: dict[str, Any] | None = None
                    for i in range(20):
                        await a.post(group, f"hello from python {i}")
                        with trio.move_on_after(2):
                            verified = await out.wait_for("verified")
                        if verified is not None:
                            break
                    assert verified is not None, out.lines
                    assert verified["text"].startswith("hello from python")
                    assert verified["author"] == a.account_key.hex()
                    posted = await out.wait_for("posted")
                    js_account = bytes.fromhex(posted["account"])
                    for node in (a, b):
                        while "hello from js-libp2p" not in _texts(node, group):  # noqa: ASYNC110
                            await trio.sleep(0.05)
                        assert node.group_state(group).role_of(js_account) == "member"
                    assert not [s for s in out.lines if s["step"] == "refused"], out.lines
                    assert process.stdin is not None
                    await process.stdin.aclose()
                    assert await process.wait() == 0, out.lines
                rejected = (await a.statistics())["groups"]["rejected"]
                assert rejected == {}, rejected


def _texts(node: Node, group: bytes) -> list[str]:
    return [m.text for m in node.group_view(group).messages]


async def _run_js(
    command: list[str], cwd: Path, *, task_status: trio.TaskStatus[trio.Process]
) -> None:
    process = await trio.lowlevel.open_process(
        command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        task_status.started(process)
        await process.wait()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    await stream.aclose()
