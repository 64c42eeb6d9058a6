"""Where passphrases come from: a file, an environment variable, or a hidden prompt.

Order: a ``--...-passphrase-file`` option, then the environment variable, then a prompt,
but only when stdin is a terminal; a script must never hang on a prompt nobody sees.
Without any of them the error names all the ways, because the person reading it has
to pick one. An unprotected keystore is only ever the result of the explicit
``--insecure-no-passphrase`` flag, and it is announced on stderr every time.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from ..errors import ConfigError
from ..identity.keyfile import PassphrasePurpose, PassphraseSource
from ..identity.keystore import UNPROTECTED, Passphrase, Protection
from ._output import warn

__all__ = [
    "PASSPHRASE_ENV",
    "NEW_PASSPHRASE_ENV",
    "BACKUP_PASSPHRASE_ENV",
    "SecretSpec",
    "read_secret",
    "keystore_passphrase",
    "stdin_is_tty",
    "warn_unprotected",
    "warn_if_weak",
    "SHORT_PASSPHRASE",
]

# Names of environment variables, not secrets (hence the S105 waivers).
PASSPHRASE_ENV = "P2PCHAT_PASSPHRASE"  # noqa: S105
NEW_PASSPHRASE_ENV = "P2PCHAT_NEW_PASSPHRASE"  # noqa: S105
BACKUP_PASSPHRASE_ENV = "P2PCHAT_BACKUP_PASSPHRASE"  # noqa: S105
_MAX_PASSPHRASE_FILE = 64 * 1024


def stdin_is_tty() -> bool:
    """Whether a person can answer a prompt (tests replace this)."""
    return sys.stdin.isatty()


@dataclass(frozen=True)
class SecretSpec:
    """One passphrase the command needs, and the ways to supply it."""

    what: str  # "the keystore passphrase", "the backup passphrase"...
    file_option: str  # "--passphrase-file"
    env: str  # "P2PCHAT_PASSPHRASE"
    file: Path | None = None


def read_secret(spec: SecretSpec, *, confirm: bool) -> Passphrase:
    """Get one passphrase from its file, its variable, or (on a terminal) a prompt."""
    if spec.file is not None:
        return Passphrase.from_text(_read_passphrase_file(spec.file))
    from_env = os.environ.get(spec.env)
    if from_env:
        return Passphrase.from_text(from_env)
    if not stdin_is_tty():
        raise ConfigError(
            f"{spec.what[0].upper()}{spec.what[1:]} is needed and stdin is not a terminal. "
            f"Give it in one of three ways: {spec.file_option} FILE, the {spec.env} "
            "environment variable, or run the command in a terminal to be prompted."
        )
    while True:
        text = _ask(f"Enter {spec.what} (not shown as you type)")
        if not text:
            click.echo(
                "The passphrase cannot be empty; type one and press Enter (or Ctrl-C to stop).",
                err=True,
            )
            continue
        if confirm and _ask(f"Repeat {spec.what}") != text:
            click.echo("The two entries differ; please type it again.", err=True)
            continue
        break
    if confirm:
        warn_if_weak(text)
    return Passphrase.from_text(text)


def _ask(prompt: str) -> str:
    answer: str = click.prompt(prompt, hide_input=True, default="", show_default=False, err=True)
    return answer


#: Below this many characters a new passphrase gets a warning (it is still accepted).
SHORT_PASSPHRASE = 10


def warn_if_weak(text: str) -> None:
    """Warn (never refuse) when a new passphrase is short: whoever copies the keystore
    can try guesses offline, and Argon2id only slows that down."""
    if len(text) < SHORT_PASSPHRASE:
        warn(
            f"This passphrase is short ({len(text)} characters). Anyone who gets a copy of "
            "the keystore can try to guess it; several words or 10+ characters are safer. "
            "Change it any time with `p2pchat keys passwd`."
        )


def keystore_passphrase(
    file: Path | None, *, insecure: bool, new_file: Path | None = None
) -> PassphraseSource:
    """The :data:`PassphraseSource` for the home's keystore.

    ``new_file`` lets a command take the passphrase protecting a *new* keystore from a
    different file than the one opening the current keystore (``keys import``).
    """

    def source(purpose: PassphrasePurpose) -> Protection:
        if purpose is PassphrasePurpose.CREATE:
            if insecure and (new_file or file) is not None:
                raise ConfigError(
                    "--insecure-no-passphrase contradicts --passphrase-file: choose one."
                )
            if insecure:
                warn_unprotected()
                return UNPROTECTED
            spec = SecretSpec(
                "a passphrase for the new keystore",
                "--passphrase-file",
                PASSPHRASE_ENV,
                new_file if new_file is not None else file,
            )
            return read_secret(spec, confirm=True)
        spec = SecretSpec("the keystore passphrase", "--passphrase-file", PASSPHRASE_ENV, file)
        return read_secret(spec, confirm=False)

    return source


def warn_unprotected() -> None:
    warn(
        "The keystore will NOT be protected by a passphrase: anyone who can read "
        "the file can impersonate you. Protect it later with `p2pchat keys passwd`."
    )


def _read_passphrase_file(path: Path) -> str:
    """The file's text minus one trailing newline (what ``echo secret > file`` adds)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_PASSPHRASE_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"Cannot read the passphrase file {path}: {exc.strerror}.") from None
    if len(data) > _MAX_PASSPHRASE_FILE:
        raise ConfigError(f"The passphrase file {path} is too large.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"The passphrase file {path} is not UTF-8 text.") from None
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text
