"""Issue 16 items 7 and 17: the README's command blocks work as written.

Every ``p2pchat ...`` line of every ``sh`` block is parsed by the real command tree
(placeholders such as ``<alice's peer id>`` replaced by well-formed values): the command
exists, its options exist and its arguments have the right types and number. The
network-free ones (``keys ...``) run for real; ``make`` lines name real targets and
``make run`` passes its variables through to ``p2pchat node run``. The node-talking
commands run against real nodes in ``test_cli_new_user`` and ``test_cli_node``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from p2pchat.cli import cli
from p2pchat.identity import keystore
from p2pchat.identity.peerid import peer_id_from_ed25519
from tests.unit.test_cli_keys import FAST

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PEER = peer_id_from_ed25519(bytes(range(32)))
PLACEHOLDERS = {
    "<alice's peer id>": PEER,
    "<carol's peer id>": PEER,
    "<mailbox peer id>": PEER,
    "<account-key>": "ab" * 32,
    "<alice's account key>": "ab" * 32,
    "<bob's account key>": "cd" * 32,
    "<group id>": "ef" * 32,
    "<poll id>": "1234abcd",
    "p2pchat-invite:...": "p2pchat-invite:AAAA",
    "p2pchat-link:...": "p2pchat-link:AAAA",
}


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)


def _inline() -> list[str]:
    """Commands quoted in the prose: `p2pchat ...` code spans."""
    return re.findall(r"`(p2pchat [^`]+)`", README)


def _commands(kind: str) -> list[list[str]]:
    """Logical lines (``\\`` continuations joined) starting with ``kind`` after any
    ``VAR=value`` prefixes, comments dropped; then the prose's code spans."""
    found = []
    for block in [*_blocks(), "\n".join(_inline())]:
        for line in block.replace("\\\n", " ").splitlines():
            text = line.split(" #")[0].strip()
            for placeholder, value in PLACEHOLDERS.items():
                text = text.replace(placeholder, value)
            if not text or text.startswith("#"):
                continue
            words = shlex.split(text)
            while words and re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", words[0]):
                words.pop(0)
            if words and words[0] == kind:
                found.append(words[1:])
    return found


def _parse(args: list[str]) -> None:
    """Resolve the command path and parse its arguments, as click would run it."""
    ctx = cli.make_context("p2pchat", ["--home", "/nonexistent", *args], resilient_parsing=False)
    command: click.Command = cli
    rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    while isinstance(command, click.Group) and rest:
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None, f"no command {name!r} in {args}"
        ctx = sub.make_context(name or "", list(rest), parent=ctx)
        command, rest = sub, [*getattr(ctx, "_protected_args", []), *ctx.args]
    assert not isinstance(command, click.Group), f"{args} names a group, not a command"


def test_the_readme_has_the_walkthrough() -> None:
    lines = [" ".join(c[:2]) for c in _commands("p2pchat")]
    for expected in (
        "node run",
        "contacts add",
        "contacts verify",
        "dm send",
        "groups join",
        "groups live-post",
        "groups vote",
    ):
        assert expected in lines
    assert len(_commands("p2pchat")) >= 35


@pytest.mark.parametrize("args", _commands("p2pchat"), ids=" ".join)
def test_every_p2pchat_line_parses(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the files a line names (./beach.jpg) exist, as for a reader
    for arg in args:
        if arg.startswith("./"):
            (tmp_path / arg).write_bytes(b"")
    if "--help" in args or "--version" in args:  # printed, then exit 0
        with pytest.raises(click.exceptions.Exit, match="0"):
            _parse(args)
        return
    _parse(args)


#: Commands whose first argument is a GROUP (an id, an id prefix or a group's name).
_GROUP_FIRST = {"read", "post", "invite", "members", "info", "poll", "vote", "live-post",
                "live-read", "react", "leave", "remove", "ban", "promote"}  # fmt: skip


def test_groups_are_named_as_created() -> None:
    """A group is named by a name the README created (a tag is not a name)."""
    commands = [args for args in _commands("p2pchat") if args[0] == "groups"]
    created = {args[2].casefold() for args in commands if args[1] == "create"}
    for args in commands:
        if args[1] in _GROUP_FIRST:
            group = args[2]
            is_id = re.fullmatch(r"[0-9a-f]{4,64}", group) is not None
            assert is_id or group.casefold() in created, f"{args}: no group named {group!r}"


def test_mistakes_are_caught_by_the_parser() -> None:
    """The check can fail: an unknown option or command is refused."""
    with pytest.raises(click.UsageError):
        _parse(["peers", "--nearby"])
    with pytest.raises(click.UsageError):
        _parse(["groups", "vote", "g"])
    with pytest.raises(click.UsageError):
        _parse(["nonsense"])


def test_network_free_lines_run_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "DEFAULT_KDF_LIMITS", FAST)
    env = {"P2PCHAT_HOME": str(tmp_path / "home"), "P2PCHAT_PASSPHRASE": "readme pass"}
    made = CliRunner().invoke(cli, ["keys", "generate"], env=env)
    assert made.exit_code == 0, made.output
    network_free = [args for args in _commands("p2pchat") if args[0] == "keys"]
    assert network_free
    for args in network_free:
        result = CliRunner().invoke(cli, args, env=env)
        assert result.exit_code == 0, (args, result.output)
    film = tmp_path / "film.mp4"
    film.write_bytes(b"frames")
    hashed = CliRunner().invoke(cli, ["groups", "media-hash", str(film)], env=env)
    assert re.fullmatch(r"[0-9a-f]{64}\n", hashed.stdout)


def test_make_lines_name_real_targets_and_run_passes_options() -> None:
    drop = {"P2PCHAT_HOME", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"}  # also when run by make
    env = {k: v for k, v in os.environ.items() if k not in drop}
    targets = {args[0] for args in _commands("make")}
    assert {"run", "test"} <= targets
    for target in sorted(targets):
        dry = subprocess.run(
            ["make", "-n", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert dry.returncode == 0, dry.stderr
    run = subprocess.run(
        ["make", "-n", "run", "PORT=4001", f"BOOTSTRAP=/ip4/127.0.0.1/tcp/4002/p2p/{PEER}",
         "ARGS=--nearby"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    [command] = [line for line in run.stdout.splitlines() if "node run" in line]
    assert command.endswith(
        f"p2pchat node run --create-identity --port 4001 "
        f"--bootstrap /ip4/127.0.0.1/tcp/4002/p2p/{PEER} --nearby"
    )
    # One home for both: make run sets none, so the node uses the CLI's default.
    assert "P2PCHAT_HOME" not in command
    assert "--home" not in command
    assert "source .venv/bin/activate" in README
