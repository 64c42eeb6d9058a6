"""``p2pchat node run`` through CliRunner: options, saved config, identity, clean stop.

The node itself is replaced (``serve``) where only the command's own work is checked;
:func:`run_until_signal` is run for real on the memory network and stopped by a real
SIGTERM sent to this process.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import trio
from click.testing import CliRunner, Result
from nacl.pwhash import argon2id

from p2pchat.cli import cli
from p2pchat.config import NodeConfig
from p2pchat.errors import ConfigError, NetworkError
from p2pchat.events import EventBus, EventStream
from p2pchat.identity import keystore
from p2pchat.identity.keystore import KdfLimits, UnlockedIdentity
from p2pchat.net.memory import open_memory_hub
from p2pchat.node import Node
from p2pchat.storage.memory import MemoryStore
from tests.conftest import DeterministicRng
from tests.node.harness import make_identity, memory_opener

# The package exports the click group under the module's name; this is the module.
node_cli = importlib.import_module("p2pchat.cli.node")
FAST = KdfLimits(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
PASS = "node passphrase"
BOOTSTRAP = "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWBbBGFjjWwJD8T1Eqns6mLCknk5v2H8YPEmevhpWyStkU"
MAILBOX = "12D3KooWBbBGFjjWwJD8T1Eqns6mLCknk5v2H8YPEmevhpWyStkU"


class FakeNode:
    """What ``announce`` reads from a running node."""

    def __init__(self, identity: UnlockedIdentity) -> None:
        self.peer_id = identity.public.peer_id
        self.listen_addrs = [f"/ip4/127.0.0.1/tcp/4242/p2p/{self.peer_id}"]


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "DEFAULT_KDF_LIMITS", FAST)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[NodeConfig]:
    """Replace the running of the node: record its config and announce a fake node."""
    configs: list[NodeConfig] = []

    def serve(
        config: NodeConfig, identity: UnlockedIdentity, announce: Callable[[Any, None], None]
    ) -> None:
        configs.append(config)
        announce(FakeNode(identity), None)

    monkeypatch.setattr(node_cli, "serve", serve)
    return configs


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "node-home"


def run(home: Path, *args: str, passphrase: str | None = PASS) -> Result:
    env: dict[str, str | None] = {
        "P2PCHAT_HOME": str(home),
        "P2PCHAT_PASSPHRASE": passphrase,
        "P2PCHAT_NEW_PASSPHRASE": None,
        "P2PCHAT_BACKUP_PASSPHRASE": None,
    }
    return CliRunner().invoke(cli, ["node", "run", *args], env=env, catch_exceptions=False)


def run_json(home: Path, *args: str, passphrase: str | None = PASS) -> dict[str, Any]:
    result = run(home, "--json", *args, passphrase=passphrase)
    assert result.exit_code == 0, result.output
    value = json.loads(result.stdout)
    assert isinstance(value, dict)
    return value


def test_first_start_creates_the_identity_and_later_starts_reuse_it(
    home: Path, served: list[NodeConfig]
) -> None:
    first = run_json(home, "--create-identity", "--port", "4001", "--bootstrap", BOOTSTRAP)
    assert set(first) == {"home", "created", "identity", "listen_addrs", "rpc", "config"}
    assert first["created"] is True
    assert first["config"] == {"listen": "0.0.0.0", "port": 4001, "bootstrap": [BOOTSTRAP]}
    assert first["listen_addrs"] == [f"/ip4/127.0.0.1/tcp/4242/p2p/{first['identity']['peer_id']}"]
    assert stat.S_IMODE((home / "identity.keystore").stat().st_mode) == 0o600
    assert json.loads((home / "config.json").read_text()) == {
        "port": 4001,
        "bootstrap": [BOOTSTRAP],
    }

    second = run_json(home, "--create-identity", "--listen", "127.0.0.1")
    assert second["created"] is False
    assert second["identity"] == first["identity"]
    assert second["config"] == {"listen": "127.0.0.1", "port": 4001, "bootstrap": [BOOTSTRAP]}
    assert [c.net.port for c in served] == [4001, 4001]
    assert served[1].net.listen_hosts == ("127.0.0.1",)
    assert served[1].net.bootstrap == (BOOTSTRAP,)

    shown = CliRunner().invoke(cli, ["--home", str(home), "--json", "keys", "show"])
    assert json.loads(shown.stdout)["identity"] == first["identity"]


def test_every_option_is_saved_and_reaches_the_node_config(
    home: Path, served: list[NodeConfig]
) -> None:
    args = ["--create-identity", "--nearby", "--mailbox", "--mailbox-use", MAILBOX]
    args += ["--display-name", "Ann", "--rpc-tcp-port", "0", "--port", "0"]
    assert run(home, *args).exit_code == 0
    config = served[0]
    assert (config.net.mdns, config.net.port, config.display_name) == (True, 0, "Ann")
    assert (config.mailbox.enabled, config.mailbox.use) == (True, (MAILBOX,))
    assert (config.rpc, config.rpc_tcp_port, config.home) == (True, 0, home)

    assert run(home, "--no-nearby").exit_code == 0  # later starts keep what is not given
    assert (served[1].net.mdns, served[1].mailbox.use, served[1].display_name) == (
        False,
        (MAILBOX,),
        "Ann",
    )
    assert json.loads((home / "config.json").read_text())["nearby"] is False


def test_default_port_is_the_documented_one(home: Path, served: list[NodeConfig]) -> None:
    assert run(home, "--create-identity").exit_code == 0
    assert served[0].net.port == 4242
    assert not (home / "config.json").exists()


def test_human_output_names_the_node(home: Path, served: list[NodeConfig]) -> None:
    result = run(home, "--create-identity")
    assert result.exit_code == 0, result.output
    assert "12D3KooW" in result.stdout
    assert "Press Ctrl-C" in result.stdout


def test_a_second_node_on_the_same_home_is_refused_before_unlocking(
    home: Path, tmp_path: Path, served: list[NodeConfig]
) -> None:
    assert run(home, "--create-identity").exit_code == 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(home / "rpc.sock"))
        listener.listen(1)
        refused = run(home, passphrase="wrong: never asked")
    assert refused.exit_code == 2
    assert "already running" in refused.stderr
    (home / "rpc.sock").unlink()  # what a crashed node leaves: a socket nobody serves
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(home / "rpc.sock"))
    assert run(home).exit_code == 0
    assert len(served) == 2


async def test_run_until_signal_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    identity = make_identity("runner")
    config = NodeConfig(home=tmp_path / "h")
    seen: list[str] = []
    async with open_memory_hub(rng=random.Random(0)) as hub:

        def factory(cfg: NodeConfig, ident: UnlockedIdentity) -> Node:
            return Node(
                cfg,
                ident,
                network=memory_opener(hub),
                store=MemoryStore(),
                rng=DeterministicRng("runner"),
            )

        def announce(running: Any, server: Any) -> None:
            seen.append(running.peer_id)
            assert (tmp_path / "h" / "rpc.sock").is_socket()
            assert server.unix_path == tmp_path / "h" / "rpc.sock"
            os.kill(os.getpid(), signal.SIGTERM)  # trio's receiver holds SIGTERM here

        with trio.fail_after(20):
            await node_cli.run_until_signal(config, identity, announce, node_factory=factory)
    assert seen == [identity.public.peer_id]
    assert not (tmp_path / "h" / "rpc.sock").exists()


def test_without_create_identity_a_missing_keystore_is_an_error(
    home: Path, served: list[NodeConfig]
) -> None:
    result = run(home)
    assert result.exit_code == 3
    assert "--create-identity" in result.output
    assert not home.exists()


def test_wrong_passphrase_and_missing_passphrase(home: Path, served: list[NodeConfig]) -> None:
    assert run(home, "--create-identity").exit_code == 0
    wrong = run(home, passphrase="not it")
    assert wrong.exit_code == 5
    assert "Traceback" not in wrong.output
    missing = run(home, passphrase=None)
    assert missing.exit_code == 2
    assert "P2PCHAT_PASSPHRASE" in missing.output


def test_insecure_identity_needs_the_explicit_flag(home: Path, served: list[NodeConfig]) -> None:
    refused = run(home, "--insecure-no-passphrase", passphrase=None)
    assert refused.exit_code == 2
    made = run(home, "--create-identity", "--insecure-no-passphrase", passphrase=None)
    assert made.exit_code == 0, made.output
    assert "NOT be protected" in made.stderr
    assert run_json(home, passphrase=None)["created"] is False


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--bootstrap", "192.0.2.7:4001"), "not a bootstrap address"),
        (("--port", "70000"), "70000"),
        (("--display-name", "x" * 65), "display name"),
    ],
)
def test_bad_options_are_usage_errors(
    home: Path, served: list[NodeConfig], args: tuple[str, ...], phrase: str
) -> None:
    result = run(home, "--create-identity", *args)
    assert result.exit_code == 2
    assert phrase in result.output
    assert not (home / "identity.keystore").exists()
    assert served == []


class StubNode:
    """A node whose start can fail, hang, or come up without listening."""

    def __init__(self, *, start: Callable[[], Awaitable[None]], listen: list[str]) -> None:
        self._start = start
        self.listen_addrs = listen
        self.peer_id = "12D3KooWstub"
        self.closed = False
        self._bus = EventBus()

    def events(self) -> EventStream:
        return self._bus.stream()

    async def __aenter__(self) -> StubNode:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True


async def _run_stub(stub: StubNode, tmp_path: Path) -> list[object]:
    announced: list[object] = []
    with trio.fail_after(20):
        await node_cli.run_until_signal(
            NodeConfig(home=tmp_path / "h"),
            make_identity("stub"),
            lambda running, _server: announced.append(running),
            node_factory=lambda _c, _i: cast(Node, stub),
        )
    return announced


async def test_start_up_errors_come_out_bare(tmp_path: Path) -> None:
    async def refuse() -> None:
        raise ConfigError("another node is already serving RPC")

    with pytest.raises(ConfigError, match="already serving"):
        await _run_stub(StubNode(start=refuse, listen=[]), tmp_path)


async def test_a_node_that_cannot_listen_is_an_error(tmp_path: Path) -> None:
    stub = StubNode(start=trio.lowlevel.checkpoint, listen=[])
    with pytest.raises(NetworkError, match="port 4242: is the port in use"):
        await _run_stub(stub, tmp_path)
    assert stub.closed


async def test_a_signal_during_start_up_gives_up_the_start(tmp_path: Path) -> None:
    async def hang() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # trio's receiver holds SIGINT here
        await trio.sleep_forever()

    assert await _run_stub(StubNode(start=hang, listen=["/ip4/127.0.0.1/tcp/1"]), tmp_path) == []


def test_issue16_item15_bad_values_and_failed_starts_save_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    garbage = run(home, "--create-identity", "--mailbox-use", "garbage")
    assert garbage.exit_code == 2, garbage.output
    assert "'garbage' is not a mailbox" in garbage.stderr
    assert not (home / "config.json").exists()

    def port_in_use(config: NodeConfig, identity: UnlockedIdentity, announce: Any) -> None:
        raise NetworkError("the node could not listen on 0.0.0.0 port 4001: is the port in use?")

    monkeypatch.setattr(node_cli, "serve", port_in_use)
    failed = run(home, "--create-identity", "--port", "4001")
    assert failed.exit_code == 1, failed.output
    assert "port in use" in failed.stderr
    assert not (home / "config.json").exists()  # the next plain start is not broken by it


def test_issue16_item16_a_mailbox_may_be_named_by_its_address(
    home: Path, served: list[NodeConfig]
) -> None:
    assert run(home, "--create-identity", "--mailbox-use", BOOTSTRAP).exit_code == 0
    assert served[0].mailbox.use_peers == ((MAILBOX, ("/ip4/192.0.2.7/tcp/4001",)),)
    cut = run(home, "--mailbox-use", "/ip4/192.0.2.7/tcp/4001")
    assert cut.exit_code == 2
    assert "must end in /p2p/<peer id>" in cut.stderr
