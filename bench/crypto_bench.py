"""Throughput of the crypto sessions against the raw primitives they are built from.

    .venv/bin/python bench/crypto_bench.py            # full run (well under a minute)
    .venv/bin/python bench/crypto_bench.py --quick    # smoke run

For each message size, a session operation (group encrypt/decrypt, pairwise encrypt/
decrypt) is timed next to the bare primitives it cannot avoid, measured in the same run on
the same machine:

* group encrypt: HMAC chain step (2 x HMAC-SHA256) + XChaCha20-Poly1305 encrypt of the
  padded plaintext + Ed25519 sign;
* group decrypt: HMAC chain step + Ed25519 verify + XChaCha20-Poly1305 decrypt;
* pairwise encrypt/decrypt: HMAC chain step + AEAD of the header + AEAD of the body.

The ratio (session rate / raw rate) is the share of time spent in cryptography rather
than in our framing, CBOR and bookkeeping; the target is at least 50 %. Rates use process
CPU time and each figure is the best of several alternating rounds, because the machine is
shared. Timing is reported here, never
asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from nacl import bindings

from p2pchat_crypto.group import PAD_BLOCK, GroupSession, InboundGroupSession
from p2pchat_crypto.kdf import hmac_sha256

SIZES = (100, 4096)
GROUP_ID = b"\x42" * 16
SENDER = b"\xa0" * 32
NOW_MS = 1_767_225_600_000
_HEADER_AD_LEN = 60  # about the size of a group message's associated data
_PAIRWISE_PAD = 256


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a session rate beside its raw-primitive rate."""

    operation: str
    size: int
    session_rate: float
    raw_rate: float

    @property
    def ratio(self) -> float:
        return self.session_rate / self.raw_rate


def _rate(count: int, action: Callable[[], object]) -> float:
    """Messages per second of *this process's CPU time*: other programs on a shared
    machine slow the wall clock, not the work done here."""
    start = time.process_time()
    action()
    elapsed = time.process_time() - start
    return count / max(elapsed, 1e-9)


def _padded_len(size: int, block: int) -> int:
    return (size // block + 1) * block


# -- raw primitives -------------------------------------------------------------------


def raw_group_rates(size: int, count: int) -> tuple[float, float]:
    """``(encrypt, decrypt)`` messages/s of the bare primitives of one group message."""
    chain_key, aead_key, nonce = os.urandom(32), os.urandom(32), os.urandom(24)
    public, secret = bindings.crypto_sign_seed_keypair(os.urandom(32))
    ad = os.urandom(_HEADER_AD_LEN)
    padded = os.urandom(_padded_len(size, PAD_BLOCK))
    ciphertext = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, ad, nonce, aead_key)
    signed = bindings.crypto_sign(ad + ciphertext, secret)

    def encrypt_all() -> None:
        for _ in range(count):
            hmac_sha256(chain_key, b"\x01")
            hmac_sha256(chain_key, b"\x02")
            out = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, ad, nonce, aead_key)
            bindings.crypto_sign(ad + out, secret)

    def decrypt_all() -> None:
        for _ in range(count):
            hmac_sha256(chain_key, b"\x01")
            hmac_sha256(chain_key, b"\x02")
            bindings.crypto_sign_open(signed, public)
            bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, aead_key)

    return _rate(count, encrypt_all), _rate(count, decrypt_all)


def raw_pairwise_rates(size: int, count: int) -> tuple[float, float]:
    """``(encrypt, decrypt)`` messages/s of header AEAD + body AEAD + chain step."""
    chain_key, key, header_key = os.urandom(32), os.urandom(32), os.urandom(32)
    nonce = os.urandom(24)
    ad = os.urandom(64)
    header = os.urandom(40)
    padded = os.urandom(_padded_len(size, _PAIRWISE_PAD))
    aead_encrypt = bindings.crypto_aead_xchacha20poly1305_ietf_encrypt
    aead_decrypt = bindings.crypto_aead_xchacha20poly1305_ietf_decrypt
    sealed_header = aead_encrypt(header, ad, nonce, header_key)
    body = aead_encrypt(padded, ad + sealed_header, nonce, key)

    def encrypt_all() -> None:
        for _ in range(count):
            hmac_sha256(chain_key, b"\x01")
            hmac_sha256(chain_key, b"\x02")
            aead_encrypt(header, ad, nonce, header_key)
            aead_encrypt(padded, ad + sealed_header, nonce, key)

    def decrypt_all() -> None:
        for _ in range(count):
            hmac_sha256(chain_key, b"\x01")
            hmac_sha256(chain_key, b"\x02")
            aead_decrypt(sealed_header, ad, nonce, header_key)
            aead_decrypt(body, ad + sealed_header, nonce, key)

    return _rate(count, encrypt_all), _rate(count, decrypt_all)


# -- sessions -------------------------------------------------------------------------


def group_session_rates(size: int, count: int) -> tuple[float, float]:
    """``(encrypt, decrypt)`` messages/s through GroupSession / InboundGroupSession."""
    outbound = GroupSession.create(GROUP_ID, 1, SENDER, os.urandom)
    inbound = InboundGroupSession.from_distribution(outbound.distribution_message())
    plaintext = os.urandom(size)
    messages: list[bytes] = []

    def encrypt_all() -> None:
        messages.extend(outbound.encrypt(plaintext) for _ in range(count))

    def decrypt_all() -> None:
        for message in messages:
            inbound.decrypt(message)

    return _rate(count, encrypt_all), _rate(count, decrypt_all)


def pairwise_available() -> bool:
    """The pairwise core is written in parallel: benchmark it only if it imports."""
    try:
        from p2pchat_crypto import ratchet  # noqa: F401
    except ImportError:
        return False
    return True


def pairwise_session_rates(size: int, count: int) -> tuple[float, float]:
    """``(encrypt, decrypt)`` messages/s through an acknowledged pairwise ``Session``."""
    from p2pchat_crypto.identity import Account, Device
    from p2pchat_crypto.prekeys import PrekeyBundle, SignedPrekey
    from p2pchat_crypto.ratchet import Session
    from p2pchat_crypto.replay import ReplayCache

    rng = os.urandom
    day = 86_400_000
    alice, bob = Account.generate(rng), Account.generate(rng)
    bob_device = Device.generate(bob, rng, now=NOW_MS, expires=NOW_MS + 365 * day)
    prekey = SignedPrekey.generate(rng, prekey_id=1, now=NOW_MS, expires=NOW_MS + 30 * day)
    bundle = PrekeyBundle.create(bob, bob_device.certificate, prekey, sequence=1)
    sender, initial = Session.initiate(alice, bundle, rng, now=NOW_MS, plaintext=b"hi")
    receiver, _ = Session.respond(bob, prekey, initial.encode(), ReplayCache(), now=NOW_MS)
    sender.decrypt(receiver.encrypt(b"ack", rng))  # from now on: plain ratchet messages
    plaintext = os.urandom(size)
    messages: list[bytes] = []

    def encrypt_all() -> None:
        messages.extend(sender.encrypt(plaintext, rng) for _ in range(count))

    def decrypt_all() -> None:
        for message in messages:
            receiver.decrypt(message)

    return _rate(count, encrypt_all), _rate(count, decrypt_all)


# -- driver ---------------------------------------------------------------------------


Measure = Callable[[int, int], tuple[float, float]]


def _compare(
    name: str, session: Measure, raw: Measure, size: int, count: int, repeats: int
) -> list[Row]:
    """Alternate session and raw rounds (so both see the same machine), keep the best."""
    session_runs, raw_runs = [], []
    for _ in range(repeats):
        session_runs.append(session(size, count))
        raw_runs.append(raw(size, count))
    return [
        Row(
            f"{name} {operation}",
            size,
            max(run[position] for run in session_runs),
            max(run[position] for run in raw_runs),
        )
        for position, operation in enumerate(("encrypt", "decrypt"))
    ]


def run(*, count: int, repeats: int, pairwise: bool = True) -> list[Row]:
    """Measure every row; ``pairwise=False`` (or a missing pairwise core) skips those."""
    rows: list[Row] = []
    for size in SIZES:
        rows += _compare("group", group_session_rates, raw_group_rates, size, count, repeats)
    if pairwise and pairwise_available():
        for size in SIZES:
            rows += _compare(
                "pairwise", pairwise_session_rates, raw_pairwise_rates, size, count, repeats
            )
    return rows


def format_table(rows: list[Row]) -> str:
    header = f"{'operation':<18}{'size':>7}{'session msg/s':>15}{'raw msg/s':>13}{'ratio':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        size = f"{row.size // 1024} KiB" if row.size >= 1024 else f"{row.size} B"
        lines.append(
            f"{row.operation:<18}{size:>7}{row.session_rate:>15,.0f}"
            f"{row.raw_rate:>13,.0f}{row.ratio:>8.0%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--count", type=int, default=None, help="messages per measurement")
    parser.add_argument("--no-pairwise", action="store_true", help="group sessions only")
    args = parser.parse_args(argv)
    count = args.count or (200 if args.quick else 2000)
    repeats = 1 if args.quick else 7
    started = time.perf_counter()
    rows = run(count=count, repeats=repeats, pairwise=not args.no_pairwise)
    print(format_table(rows))
    print(
        f"\n{count} messages per measurement, best of {repeats} alternating rounds, rates in "
        f"process CPU time; raw = the primitives each operation cannot avoid (see the module "
        f"docstring). Wall time {time.perf_counter() - started:.1f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
