"""``p2pchat node run`` (identity only, for now) through CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from nacl.pwhash import argon2id

from p2pchat import keystore
from p2pchat.cli import cli
from p2pchat.keystore import KdfLimits

FAST = KdfLimits(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
PASS = "node passphrase"
BOOTSTRAP = "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWBbBGFjjWwJD8T1Eqns6mLCknk5v2H8YPEmevhpWyStkU"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "DEFAULT_KDF_LIMITS", FAST)


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


def test_first_start_creates_the_identity_and_later_starts_reuse_it(home: Path) -> None:
    first = run_json(home, "--create-identity", "--port", "4001", "--bootstrap", BOOTSTRAP)
    assert set(first) == {"home", "created", "identity", "config", "network"}
    assert first["created"] is True
    assert first["network"] == "not-implemented"
    assert first["config"] == {"listen": "0.0.0.0", "port": 4001, "bootstrap": [BOOTSTRAP]}
    assert stat.S_IMODE((home / "identity.keystore").stat().st_mode) == 0o600
    assert json.loads((home / "config.json").read_text()) == {
        "port": 4001,
        "bootstrap": [BOOTSTRAP],
    }

    second = run_json(home, "--create-identity", "--listen", "127.0.0.1")
    assert second["created"] is False
    assert second["identity"] == first["identity"]
    assert second["config"] == {"listen": "127.0.0.1", "port": 4001, "bootstrap": [BOOTSTRAP]}

    shown = CliRunner().invoke(cli, ["--home", str(home), "--json", "keys", "show"])
    assert json.loads(shown.stdout)["identity"] == first["identity"]


def test_human_output_says_networking_is_not_there_yet(home: Path) -> None:
    result = run(home, "--create-identity")
    assert result.exit_code == 0, result.output
    assert "12D3KooW" in result.stdout
    assert "Networking arrives" in result.stdout


def test_without_create_identity_a_missing_keystore_is_an_error(home: Path) -> None:
    result = run(home)
    assert result.exit_code == 3
    assert "--create-identity" in result.output
    assert not home.exists()


def test_wrong_passphrase_and_missing_passphrase(home: Path) -> None:
    assert run(home, "--create-identity").exit_code == 0
    wrong = run(home, passphrase="not it")
    assert wrong.exit_code == 5
    assert "Traceback" not in wrong.output
    missing = run(home, passphrase=None)
    assert missing.exit_code == 2
    assert "P2PCHAT_PASSPHRASE" in missing.output


def test_insecure_identity_needs_the_explicit_flag(home: Path) -> None:
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
    ],
)
def test_bad_options_are_usage_errors(home: Path, args: tuple[str, ...], phrase: str) -> None:
    result = run(home, "--create-identity", *args)
    assert result.exit_code == 2
    assert phrase in result.output
    assert not (home / "identity.keystore").exists()
