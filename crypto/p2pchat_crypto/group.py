"""Group messaging with sender keys: the public API (spec: ``protocol-spec/crypto-group.md``).

Every member device of a group has, per epoch, one *sender key*: a 32-byte chain key that
ratchets forward with HMAC-SHA256 once per message, and an Ed25519 signing key. It sends
the key to the other members once (a *distribution message*, carried inside pairwise
sessions by the node), then encrypts each group message once for everybody::

    outbound = GroupSession.create(group_id, epoch, my_device_key, rng)
    dist = outbound.distribution_message()          # -> each member, pairwise-encrypted
    inbound = InboundGroupSession.from_distribution(dist, expected_sender=my_device_key)
    plaintext, index = inbound.decrypt(outbound.encrypt(b"hello"))

Why these properties hold:

* *forward secrecy of the chain*: the chain only moves forward, and an inbound session
  keeps the chain key of the next message plus a bounded set of skipped keys, so stolen
  state opens no message already read;
* *newcomers read only the future*: a distribution message carries the chain at the
  sender's CURRENT index;
* *removed members read nothing new*: a membership change starts a new epoch, and every
  remaining member creates a fresh sender key that only current members receive;
* *authenticity within the group*: knowing the chain key lets a member read, not forge;
  every message is signed with the sender key's Ed25519 key, verified before any
  decryption work.

:class:`GroupKeyring` holds a device's sender keys and retires old epochs after a grace
period (the node passes ``now`` in). All objects pickle to versioned CBOR
(``to_bytes``/``from_bytes``) and to an encrypted form (``to_sealed``/``from_sealed``);
``repr`` never shows key material.
"""

from __future__ import annotations

from .group_keyring import (
    DEFAULT_GRACE_MS,
    KEYRING_PICKLE_KIND,
    GroupKeyring,
    ReceivedGroupMessage,
)
from .group_session import (
    DEFAULT_LIMITS,
    INBOUND_PICKLE_KIND,
    OUTBOUND_PICKLE_KIND,
    GroupLimits,
    GroupMessageHeader,
    GroupPlaintext,
    GroupSession,
    InboundGroupSession,
    parse_header,
)
from .group_wire import MAX_MESSAGE_SIZE, MAX_PLAINTEXT_SIZE, PAD_BLOCK

__all__ = [
    "GroupSession",
    "InboundGroupSession",
    "GroupKeyring",
    "GroupPlaintext",
    "GroupMessageHeader",
    "ReceivedGroupMessage",
    "GroupLimits",
    "parse_header",
    "DEFAULT_LIMITS",
    "DEFAULT_GRACE_MS",
    "MAX_PLAINTEXT_SIZE",
    "MAX_MESSAGE_SIZE",
    "PAD_BLOCK",
    "OUTBOUND_PICKLE_KIND",
    "INBOUND_PICKLE_KIND",
    "KEYRING_PICKLE_KIND",
]
