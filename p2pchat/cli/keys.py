"""``p2pchat keys``: create, inspect, back up, restore and re-protect the identity.

Every command is a thin shell over :mod:`p2pchat.identity.keystore`; errors travel up as
``P2PChatError`` subclasses and become messages and exit codes in one place (the root
group). None of these commands imports libp2p or trio.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from p2pchat_crypto import cbor

from ..errors import ConfigError, KeystoreExistsError
from ..identity.home import atomic_write
from ..identity.keyfile import PassphrasePurpose, read_keystore, write_keystore
from ..identity.keystore import (
    BACKUP_KIND,
    KEYSTORE_KIND,
    UNPROTECTED,
    LockedKeystore,
    Passphrase,
    Protection,
    UnlockedIdentity,
)
from ._output import emit_json, identity_rows, say, show_panel, warn_if_exposed
from ._passphrase import (
    BACKUP_PASSPHRASE_ENV,
    NEW_PASSPHRASE_ENV,
    SecretSpec,
    keystore_passphrase,
    read_secret,
    warn_unprotected,
)
from ._state import CliState, json_option, now_ms, pass_state, system_rng

__all__ = ["keys", "PUBLIC_EXPORT_KIND"]

PUBLIC_EXPORT_KIND = "p2pchat/public-identity"

_insecure_option = click.option(
    "--insecure-no-passphrase",
    "insecure",
    is_flag=True,
    help="Store the keys WITHOUT a passphrase (anyone who can read the file becomes you).",
)
_force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace an existing keystore; the old file is kept as identity.keystore.bak-<time>.",
)
_backup_file_option = click.option(
    "--backup-passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read the backup's passphrase from this file (else ${BACKUP_PASSPHRASE_ENV}, "
    "else a prompt).",
)


@click.group()
def keys() -> None:
    """Manage this node's identity keys (the keystore in the home directory).

    With --json every command prints one JSON object on stdout. Its "identity" object
    always has the keys: account_key, identity_dh_key, identity_dh_signature,
    device_key, device_certificate (hex strings), fingerprint, peer_id (text) and
    created (milliseconds since the Unix epoch). Errors print {"error": {"type",
    "message", "exit_code"}} instead.
    """


@keys.command()
@_force_option
@_insecure_option
@json_option
@pass_state
def generate(state: CliState, force: bool, insecure: bool) -> None:
    """Create a new identity: an account key and this device's key.

    The private keys are encrypted with a passphrase (from --passphrase-file,
    $P2PCHAT_PASSPHRASE, or a prompt) and saved in the home directory. An existing
    keystore is never replaced without --force.

    \b
    JSON: {"home", "keystore", "protected", "backup" (path or null), "identity": {...}}
    """
    home = state.home
    _refuse_existing(home.keystore_path, force=force)
    now = now_ms()
    identity = UnlockedIdentity.generate(rng=system_rng, now=now)
    protection = keystore_passphrase(state.passphrase_file, insecure=insecure)(
        PassphrasePurpose.CREATE
    )
    data = identity.lock(protection, rng=system_rng)
    backup = write_keystore(home, data, force=force, now=now)
    _report_saved(state, identity, protection, backup, title="New identity created")


@keys.command()
@json_option
@pass_state
def show(state: CliState) -> None:
    """Show the public identity: fingerprint, keys and the peer id the node will use.

    Needs no passphrase: the public part of the keystore is stored in clear.

    \b
    JSON: {"home", "keystore", "protected", "format_version", "identity": {...}}
    """
    home = state.home
    locked = read_keystore(home.keystore_path, home=home)
    warn_if_exposed(home)
    if state.json:
        emit_json(
            {
                "home": str(home.path),
                "keystore": str(home.keystore_path),
                "protected": locked.protected,
                "format_version": locked.version,
                "identity": locked.public.to_json_dict(),
            }
        )
        return
    rows = [
        *identity_rows(locked.public),
        ("Protected", "yes" if locked.protected else "NO (no passphrase)"),
        ("Keystore", str(home.keystore_path)),
    ]
    show_panel("p2pchat identity", rows, style="green" if locked.protected else "yellow")


@keys.command(name="export")
@click.argument("output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--public", "public_only", is_flag=True, help="Export only the public part.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "cbor"]),
    help="Encoding of a --public export (default json).",
)
@_backup_file_option
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@json_option
@pass_state
def export_(
    state: CliState,
    output: Path,
    public_only: bool,
    fmt: str | None,
    backup_passphrase_file: Path | None,
    force: bool,
) -> None:
    """Write a backup of the identity to OUTPUT ("-" for stdout).

    By default the backup holds the private keys, encrypted with a passphrase of its
    own (asked for after the keystore's). With --public it holds only the public part,
    as JSON or CBOR, for sharing. An existing OUTPUT file is replaced only with --force.

    \b
    JSON: {"output", "public_only", "format" ("json", "cbor" or "backup"),
           "identity": {...}}
    """
    home = state.home
    locked = read_keystore(home.keystore_path, home=home)
    if public_only:
        kind = fmt or "json"
        data = _public_export(locked, kind)
    else:
        if fmt is not None:
            raise ConfigError("--format applies to --public exports; a backup is always CBOR.")
        identity = _unlock(state, locked)
        spec = SecretSpec(
            "a passphrase for the backup",
            "--backup-passphrase-file",
            BACKUP_PASSPHRASE_ENV,
            backup_passphrase_file,
        )
        backup_passphrase = read_secret(spec, confirm=True)
        data, kind = identity.lock(backup_passphrase, rng=system_rng, kind=BACKUP_KIND), "backup"
    _write_output(output, data, force=force)
    if state.json:
        emit_json(
            {
                "output": str(output),
                "public_only": public_only,
                "format": kind,
                "identity": locked.public.to_json_dict(),
            }
        )
    elif str(output) != "-":
        what = "Public identity" if public_only else "Encrypted backup"
        say(f"{what} written to {output}.")


@keys.command(name="import")
@click.argument("backup", type=click.Path(dir_okay=False, exists=False, path_type=Path))
@_backup_file_option
@_force_option
@_insecure_option
@json_option
@pass_state
def import_(
    state: CliState, backup: Path, backup_passphrase_file: Path | None, force: bool, insecure: bool
) -> None:
    """Restore an identity from a backup made by `p2pchat keys export`.

    Asks for the backup's passphrase, then for a passphrase protecting the restored
    keystore. An existing keystore is replaced only with --force (and kept as a
    timestamped backup).

    \b
    JSON: {"home", "keystore", "protected", "backup" (path or null), "identity": {...}}
    """
    home = state.home
    _refuse_existing(home.keystore_path, force=force)
    locked = read_keystore(backup, kinds=(BACKUP_KIND, KEYSTORE_KIND))
    secret = None
    if locked.protected:
        spec = SecretSpec(
            "the backup's passphrase",
            "--backup-passphrase-file",
            BACKUP_PASSPHRASE_ENV,
            backup_passphrase_file,
        )
        secret = read_secret(spec, confirm=False)
    identity = locked.unlock(secret)
    protection = keystore_passphrase(state.passphrase_file, insecure=insecure)(
        PassphrasePurpose.CREATE
    )
    data = identity.lock(protection, rng=system_rng)
    saved = write_keystore(home, data, force=force, now=now_ms())
    _report_saved(state, identity, protection, saved, title="Identity restored")


@keys.command()
@click.option(
    "--new-passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read the new passphrase from this file (else ${NEW_PASSPHRASE_ENV}, else a prompt).",
)
@_insecure_option
@json_option
@pass_state
def passwd(state: CliState, new_passphrase_file: Path | None, insecure: bool) -> None:
    """Change the keystore's passphrase; the keys themselves stay the same.

    The current passphrase comes from --passphrase-file, $P2PCHAT_PASSPHRASE or a prompt;
    the new one from --new-passphrase-file, $P2PCHAT_NEW_PASSPHRASE or a prompt. No copy
    under the old passphrase is kept.

    \b
    JSON: {"home", "keystore", "protected", "backup" (always null), "identity": {...}}
    """
    home = state.home
    locked = read_keystore(home.keystore_path, home=home)
    identity = _unlock(state, locked)
    new: Protection
    if insecure:
        warn_unprotected()
        new = UNPROTECTED
    else:
        spec = SecretSpec(
            "the new passphrase", "--new-passphrase-file", NEW_PASSPHRASE_ENV, new_passphrase_file
        )
        new = read_secret(spec, confirm=True)
    data = identity.lock(new, rng=system_rng)
    write_keystore(home, data, force=True, now=now_ms(), keep_backup=False)
    _report_saved(state, identity, new, None, title="Passphrase changed")


def _unlock(state: CliState, locked: LockedKeystore) -> UnlockedIdentity:
    if not locked.protected:
        return locked.unlock(None)
    secret = keystore_passphrase(state.passphrase_file, insecure=False)(PassphrasePurpose.UNLOCK)
    assert isinstance(secret, Passphrase)
    return locked.unlock(secret)


def _refuse_existing(path: Path, *, force: bool) -> None:
    """Fail before asking for any passphrase when the answer would be "no" anyway."""
    if path.exists() and not force:
        raise KeystoreExistsError(
            f"A keystore already exists at {path}. Refusing to overwrite a key; use "
            "--force to replace it (the old file is kept as a timestamped backup)."
        )


def _public_export(locked: LockedKeystore, fmt: str) -> bytes:
    public = locked.public
    if fmt == "cbor":
        return cbor.encode({"kind": PUBLIC_EXPORT_KIND, "version": 1, **public.to_cbor_value()})
    import json

    value: dict[str, Any] = {"kind": PUBLIC_EXPORT_KIND, "version": 1, **public.to_json_dict()}
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


def _write_output(output: Path, data: bytes, *, force: bool) -> None:
    if str(output) == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        atomic_write(output, data, overwrite=force)
    except FileExistsError:
        raise ConfigError(f"{output} already exists; use --force to replace it.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot write {output}: {exc.strerror}.") from None


def _report_saved(
    state: CliState,
    identity: UnlockedIdentity,
    protection: Protection,
    backup: Path | None,
    *,
    title: str,
) -> None:
    home = state.home
    protected = isinstance(protection, Passphrase)
    if state.json:
        emit_json(
            {
                "home": str(home.path),
                "keystore": str(home.keystore_path),
                "protected": protected,
                "backup": str(backup) if backup is not None else None,
                "identity": identity.public.to_json_dict(),
            }
        )
        return
    rows = [*identity_rows(identity.public), ("Keystore", str(home.keystore_path))]
    if backup is not None:
        rows.append(("Old file", str(backup)))
    show_panel(title, rows, style="green" if protected else "yellow")
