"""``p2pchat keys``: in-process through CliRunner, plus one subprocess for the import check."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from nacl.pwhash import argon2id

from p2pchat import __version__
from p2pchat.cli import _passphrase, cli
from p2pchat.identity import keystore
from p2pchat.identity.keyfile import read_keystore
from p2pchat.identity.keystore import KdfLimits
from p2pchat_crypto import cbor

FAST = KdfLimits(opslimit=argon2id.OPSLIMIT_MIN, memlimit=argon2id.MEMLIMIT_MIN)
PASS = "tr0ub4dor&3 passphrase"
IDENTITY_KEYS = {
    "account_key",
    "identity_dh_key",
    "identity_dh_signature",
    "fingerprint",
    "device_key",
    "device_certificate",
    "peer_id",
    "created",
}
_ENV_VARS = (
    "P2PCHAT_HOME",
    "P2PCHAT_PASSPHRASE",
    "P2PCHAT_NEW_PASSPHRASE",
    "P2PCHAT_BACKUP_PASSPHRASE",
)


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keystore, "DEFAULT_KDF_LIMITS", FAST)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def run(
    home: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> Result:
    """Invoke the CLI with a clean P2PCHAT_* environment; unexpected exceptions propagate."""
    full_env: dict[str, str | None] = dict.fromkeys(_ENV_VARS)
    full_env["P2PCHAT_HOME"] = str(home)
    full_env.update(env or {})
    return CliRunner().invoke(cli, list(args), env=full_env, input=stdin, catch_exceptions=False)


def run_json(home: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run(home, "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    value = json.loads(result.stdout)
    assert isinstance(value, dict)
    return value


def generate(home: Path, *extra: str) -> dict[str, Any]:
    return run_json(home, "keys", "generate", *extra, env={"P2PCHAT_PASSPHRASE": PASS})


def assert_fails(result: Result, code: int, *phrases: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def test_generate_then_show(home: Path) -> None:
    made = generate(home)
    assert set(made) == {"home", "keystore", "protected", "backup", "identity"}
    assert set(made["identity"]) == IDENTITY_KEYS
    assert made["protected"] is True
    assert made["backup"] is None
    assert made["home"] == str(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(made["keystore"]).stat().st_mode) == 0o600

    shown = run_json(home, "keys", "show")  # no passphrase anywhere
    assert set(shown) == {"home", "keystore", "protected", "format_version", "identity"}
    assert shown["identity"] == made["identity"]
    assert shown["format_version"] == keystore.FORMAT_VERSION
    assert shown["identity"]["peer_id"].startswith("12D3KooW")

    text = run(home, "keys", "show")
    assert text.exit_code == 0
    for value in (made["identity"]["fingerprint"], made["identity"]["peer_id"]):
        assert value in text.stdout


def test_json_flag_works_after_the_command_too(home: Path) -> None:
    generate(home)
    result = run(home, "keys", "show", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["protected"] is True


def test_generate_refuses_to_overwrite_without_force(home: Path) -> None:
    first = generate(home)
    keystore_file = Path(first["keystore"])
    before = keystore_file.read_bytes()
    assert_fails(
        run(home, "keys", "generate", env={"P2PCHAT_PASSPHRASE": PASS}), 4, "--force", "already"
    )
    assert keystore_file.read_bytes() == before

    second = generate(home, "--force")
    assert second["identity"]["account_key"] != first["identity"]["account_key"]
    backup = Path(second["backup"])
    assert backup.parent == home
    assert backup.name.startswith("identity.keystore.bak-")
    assert backup.read_bytes() == before


def test_without_a_passphrase_source_the_error_names_the_three_ways(home: Path) -> None:
    result = run(home, "keys", "generate")
    assert_fails(result, 2, "--passphrase-file", "P2PCHAT_PASSPHRASE", "terminal")
    assert not (home / "identity.keystore").exists()


def test_prompt_on_a_terminal(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_passphrase, "stdin_is_tty", lambda: True)
    result = run(home, "keys", "generate", stdin=f"{PASS}\n{PASS}\n")
    assert result.exit_code == 0, result.output
    assert PASS not in result.output  # hidden input is not echoed
    assert run(home, "keys", "passwd", stdin=f"{PASS}\nnew one\nnew one\n").exit_code == 0
    assert_fails(run(home, "keys", "passwd", stdin=f"{PASS}\nx\nx\n"), 5, "passphrase")


def test_passphrase_file(home: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(PASS + "\n")
    result = run(home, "--passphrase-file", str(secret_file), "keys", "generate")
    assert result.exit_code == 0, result.output
    # The file's trailing newline is not part of the passphrase: the env value opens it.
    out = tmp_path / "backup.p2pkey"
    exported = run(
        home,
        "keys",
        "export",
        str(out),
        env={"P2PCHAT_PASSPHRASE": PASS, "P2PCHAT_BACKUP_PASSPHRASE": "b"},
    )
    assert exported.exit_code == 0, exported.output
    missing = run(home, "--passphrase-file", str(tmp_path / "nope"), "keys", "passwd")
    assert_fails(missing, 2, "passphrase file")


def test_insecure_contradicting_a_passphrase_file_is_refused(home: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(PASS)
    result = run(
        home, "--passphrase-file", str(secret_file), "keys", "generate", "--insecure-no-passphrase"
    )
    assert_fails(result, 2, "choose one")
    assert not home.exists()


def test_markup_in_paths_is_printed_literally(tmp_path: Path) -> None:
    home = tmp_path / "[bold]h[/bold]"
    generate(home)
    result = run(home, "keys", "show")
    assert result.exit_code == 0
    assert "[bold]h[/bold]" in result.stdout


def test_insecure_keystore_warns_and_is_marked(home: Path) -> None:
    result = run(home, "--json", "keys", "generate", "--insecure-no-passphrase")
    assert result.exit_code == 0, result.output
    assert "NOT be protected" in result.stderr
    assert json.loads(result.stdout)["protected"] is False
    assert run_json(home, "keys", "show")["protected"] is False


def test_show_errors(home: Path) -> None:
    assert_fails(run(home, "keys", "show"), 3, "no p2pchat home", str(home))
    made = generate(home)
    path = Path(made["keystore"])
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])
    assert_fails(run(home, "keys", "show"), 6, "truncated")

    value = cbor.decode(good, max_size=1 << 20)
    value["version"] = 9
    path.write_bytes(cbor.encode(value))
    assert_fails(run(home, "keys", "show"), 7, "version 9", "newer")

    path.write_bytes(b"hello")
    result = run(home, "--json", "keys", "show")
    assert result.exit_code == 6
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "keystore-corrupt"
    assert error["exit_code"] == 6
    assert "cannot be read" in error["message"]


def test_tampered_ciphertext_fails_on_unlock(home: Path) -> None:
    path = Path(generate(home)["keystore"])
    value = cbor.decode(path.read_bytes(), max_size=1 << 20)
    value["ciphertext"] = bytes([value["ciphertext"][0] ^ 1]) + value["ciphertext"][1:]
    path.write_bytes(cbor.encode(value))
    assert run(home, "keys", "show").exit_code == 0  # public part still readable
    result = run(
        home, "keys", "passwd", env={"P2PCHAT_PASSPHRASE": PASS, "P2PCHAT_NEW_PASSPHRASE": "n"}
    )
    assert_fails(result, 6, "modified or damaged")


def test_passwd_changes_the_passphrase_not_the_key(home: Path) -> None:
    made = generate(home)
    changed = run_json(
        home,
        "keys",
        "passwd",
        env={"P2PCHAT_PASSPHRASE": PASS, "P2PCHAT_NEW_PASSPHRASE": "second passphrase"},
    )
    assert changed["identity"] == made["identity"]
    assert changed["backup"] is None
    assert sorted(p.name for p in home.iterdir()) == ["identity.keystore"]
    old = run(
        home, "keys", "passwd", env={"P2PCHAT_PASSPHRASE": PASS, "P2PCHAT_NEW_PASSPHRASE": "x"}
    )
    assert_fails(old, 5, "does not open")
    again = run(
        home,
        "keys",
        "passwd",
        env={"P2PCHAT_PASSPHRASE": "second passphrase", "P2PCHAT_NEW_PASSPHRASE": "third"},
    )
    assert again.exit_code == 0, again.output


def test_export_backup_and_import_elsewhere(home: Path, tmp_path: Path) -> None:
    made = generate(home)
    backup = tmp_path / "id.backup"
    env = {"P2PCHAT_PASSPHRASE": PASS, "P2PCHAT_BACKUP_PASSPHRASE": "backup secret"}
    exported = run_json(home, "keys", "export", str(backup), env=env)
    assert exported == {
        "output": str(backup),
        "public_only": False,
        "format": "backup",
        "identity": made["identity"],
    }
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert_fails(run(home, "keys", "export", str(backup), env=env), 2, "--force")

    other = tmp_path / "other-home"
    wrong = run(
        other, "keys", "import", str(backup), env={**env, "P2PCHAT_BACKUP_PASSPHRASE": "no"}
    )
    assert_fails(wrong, 5)
    imported = run_json(
        other, "keys", "import", str(backup), env={**env, "P2PCHAT_PASSPHRASE": "new home pass"}
    )
    assert imported["identity"] == made["identity"]
    # The restored keystore is under its own passphrase, not the backup's.
    assert run(other, "keys", "passwd", env={"P2PCHAT_PASSPHRASE": "backup secret"}).exit_code == 5

    assert_fails(run(home, "keys", "import", str(backup), env=env), 4, "--force")
    forced = run_json(home, "keys", "import", str(backup), "--force", env=env)
    assert forced["backup"] is not None


def test_a_backup_is_not_a_keystore(home: Path, tmp_path: Path) -> None:
    generate(home)
    backup = tmp_path / "id.backup"
    env = {"P2PCHAT_PASSPHRASE": PASS, "P2PCHAT_BACKUP_PASSPHRASE": "b"}
    assert run(home, "keys", "export", str(backup), env=env).exit_code == 0
    other = tmp_path / "h2"
    other.mkdir()
    (other / "identity.keystore").write_bytes(backup.read_bytes())
    assert_fails(run(other, "keys", "show"), 6, "keys import")


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_export_public(home: Path, tmp_path: Path, fmt: str) -> None:
    made = generate(home)
    out = tmp_path / f"public.{fmt}"
    result = run(home, "keys", "export", "--public", "--format", fmt, str(out))
    assert result.exit_code == 0, result.output
    if fmt == "json":
        value = json.loads(out.read_text())
        assert value == {"kind": "p2pchat/public-identity", "version": 1, **made["identity"]}
    else:
        value = cbor.decode(out.read_bytes(), max_size=1 << 16)
        assert value["kind"] == "p2pchat/public-identity"
        assert value["account_key"].hex() == made["identity"]["account_key"]
        assert value["peer_id"] == made["identity"]["peer_id"]


def test_export_public_to_stdout(home: Path) -> None:
    made = generate(home)
    result = run(home, "keys", "export", "--public", "-")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["peer_id"] == made["identity"]["peer_id"]


def test_no_secret_in_any_output(home: Path, tmp_path: Path) -> None:
    made = generate(home)
    results = [
        run(home, "keys", "show"),
        run(home, "--json", "keys", "passwd", env={"P2PCHAT_PASSPHRASE": PASS + "x"}),
        run(home, "keys", "passwd", env={"P2PCHAT_PASSPHRASE": PASS + "x"}),
        run(
            home,
            "keys",
            "export",
            str(tmp_path / "b"),
            env={"P2PCHAT_PASSPHRASE": PASS, "P2PCHAT_BACKUP_PASSPHRASE": "bsecret"},
        ),
    ]
    for result in results:
        assert PASS not in result.output
        assert "bsecret" not in result.output
    identity = read_keystore(Path(made["keystore"])).unlock(keystore.Passphrase.from_text(PASS))
    seed = identity.device.signing_seed().hex()
    assert all(seed not in r.output for r in results)


def test_version_and_help_texts(home: Path) -> None:
    version = run(home, "--version")
    assert version.exit_code == 0
    assert __version__ in version.stdout
    main_help = run(home, "--help").stdout
    assert "Exit status" in main_help
    assert "P2PCHAT_HOME" in main_help
    assert "JSON" in run(home, "keys", "--help").stdout
    for command in ("generate", "show", "export", "import", "passwd"):
        result = run(home, "keys", command, "--help")
        assert result.exit_code == 0
        assert "--json" in result.stdout
        assert "JSON:" in result.stdout


def test_every_command_is_documented() -> None:
    keys_group = cli.commands["keys"]
    assert isinstance(keys_group, click.Group)
    for command in keys_group.commands.values():
        assert command.help
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{command.name} {param.name}"


def test_keys_show_does_not_import_libp2p_or_trio(home: Path) -> None:
    generate(home)
    script = textwrap.dedent(
        f"""
        import sys
        import p2pchat.cli
        from click.testing import CliRunner
        result = CliRunner().invoke(p2pchat.cli.cli, ["--home", {str(home)!r}, "keys", "show"])
        assert result.exit_code == 0, result.output
        heavy = sorted(m for m in ("libp2p", "trio", "multiaddr") if m in sys.modules)
        print(",".join(heavy) or "none")
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == "none"


def test_show_warns_when_others_can_read_the_keystore(home: Path) -> None:
    path = Path(generate(home)["keystore"])
    assert "other users" not in run(home, "keys", "show").stderr
    path.chmod(0o644)
    result = run(home, "keys", "show")
    assert result.exit_code == 0
    assert "other users" in result.stderr
    assert "chmod" in result.stderr


def test_file_errors_name_the_file(home: Path, tmp_path: Path) -> None:
    generate(home)
    nowhere = tmp_path / "no-such-dir" / "public.json"
    assert_fails(run(home, "keys", "export", "--public", str(nowhere)), 2, str(nowhere))
    missing = tmp_path / "missing.backup"
    assert_fails(run(tmp_path / "h", "keys", "import", str(missing)), 3, str(missing))
