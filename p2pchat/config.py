"""The node's configuration: one frozen dataclass tree, not dozens of keyword arguments.

``NodeConfig.load(home)`` reads ``<home>/config.json`` (written by ``p2pchat node run``
options) over the embedded defaults; everything can also be built in code::

    config = NodeConfig(home=Path("~/.p2pchat").expanduser(),
                        net=NetConfig(port=4242, mdns=True),
                        mailbox=MailboxConfig(enabled=True))
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .net.config import DEFAULT_PORT, NetConfig

__all__ = [
    "DAY_MS",
    "MailboxConfig",
    "DeliveryConfig",
    "BlobConfig",
    "NodeConfig",
    "mailbox_address",
]

DAY_MS = 24 * 3600 * 1000
#: The text form of an Ed25519 libp2p peer id (an identity multihash in base58btc): what
#: a mailbox entry must name. Checked by form here (configuration sits below the identity
#: layer); the key inside is decoded by :func:`p2pchat.identity.peerid.peer_id_to_key`.
_ED25519_PEER_ID = re.compile(r"12D3KooW[1-9A-HJ-NP-Za-km-z]{44}")


@dataclass(frozen=True, kw_only=True, slots=True)
class MailboxConfig:
    """Store-and-forward: whether this node holds sealed envelopes for its contacts.

    Only accepted contacts may store here. Quotas count unexpired items.
    """

    enabled: bool = False
    ttl_ms: int = 7 * DAY_MS
    max_items_per_sender: int = 500
    max_bytes_per_sender: int = 4 * 1024 * 1024
    max_items_total: int = 20_000
    max_bytes_total: int = 256 * 1024 * 1024
    #: Mailboxes *we* use (announced in our DHT record): each a peer id, found by DHT
    #: peer routing, or a multiaddr ending in ``/p2p/<peer id>``, dialled directly.
    use: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.ttl_ms <= 0 or min(self.max_items_per_sender, self.max_items_total) < 1:
            raise ConfigError("mailbox ttl and quotas must be positive")
        for entry in self.use:
            mailbox_address(entry)  # refuses garbage before anything is saved or started

    @property
    def use_peers(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """``(peer id, addresses)`` of each mailbox we use (no address: find it)."""
        return tuple(mailbox_address(entry) for entry in self.use)


def mailbox_address(entry: str) -> tuple[str, tuple[str, ...]]:
    """A ``--mailbox-use`` value as ``(peer id, addresses)``; :class:`ConfigError` if it
    is neither an Ed25519 peer id (``12D3KooW...``) nor a multiaddr ending in one."""
    text = entry.strip()
    peer_id = text
    addrs: tuple[str, ...] = ()
    if text.startswith("/"):
        base, sep, peer_id = text.rpartition("/p2p/")
        if not sep or not base:
            raise ConfigError(
                f"{entry!r} is not a mailbox address: a multiaddr must end in /p2p/<peer id>, "
                "such as /ip4/192.0.2.1/tcp/4242/p2p/12D3KooW..."
            )
        addrs = (base,)
    if not _ED25519_PEER_ID.fullmatch(peer_id):
        raise ConfigError(
            f"{entry!r} is not a mailbox: give the mailbox node's peer id (12D3KooW..., "
            "`p2pchat status` there prints it) or its address /ip4/.../tcp/PORT/p2p/12D3KooW..."
        )
    return peer_id, addrs


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryConfig:
    """Retries of the outbox, rate limits and record lifetimes."""

    #: First retry after this long; doubles each attempt up to ``retry_max_ms`` (+-20 % jitter).
    retry_initial_ms: int = 2_000
    retry_max_ms: int = 5 * 60_000
    #: An undelivered message is marked failed after this long (it stays in the outbox
    #: until then; a message to an account that was never found fails sooner).
    give_up_ms: int = 14 * DAY_MS
    unknown_account_give_up_ms: int = 3 * DAY_MS
    #: How long the sender waits for a delivery ack on an open stream.
    ack_timeout_ms: int = 10_000
    #: Per remote peer, before any signature check: sustained frames/s and burst.
    peer_rate: float = 50.0
    peer_burst: int = 200
    #: Per group author (account): events/s accepted, and burst, however the group's
    #: slow mode is set. The rest is deferred: not stored or relayed now, fetched by a
    #: later sync at this rate, so a flooding member costs every other member a bounded
    #: rate and nothing is lost.
    author_rate: float = 50.0
    author_burst: int = 1000
    #: Signed prekeys live this long and are replaced after half of it.
    prekey_lifetime_ms: int = 14 * DAY_MS
    #: DHT records (bundle, device list, mailbox) expire after this and are re-published
    #: after a third of it.
    record_lifetime_ms: int = DAY_MS

    def __post_init__(self) -> None:
        if not 0 < self.retry_initial_ms <= self.retry_max_ms:
            raise ConfigError("retry delays must satisfy 0 < initial <= max")
        if self.author_rate <= 0 or self.author_burst < 1:
            raise ConfigError("the author ceiling's rate and burst must be positive")
        if self.peer_rate <= 0 or self.peer_burst < 1 or self.ack_timeout_ms <= 0:
            raise ConfigError("rates, bursts and timeouts must be positive")


@dataclass(frozen=True, kw_only=True, slots=True)
class BlobConfig:
    """Attachments: what we keep, how fast we serve, what we fetch without being asked
    (protocol-spec/blobs.md §4)."""

    #: Our own sends are kept this long after sending.
    own_keep_ms: int = 30 * DAY_MS
    #: Blobs we fetched are kept this long after their last use.
    received_keep_ms: int = 30 * DAY_MS
    #: Group media fetched to show a group's images: least recently used beyond this.
    cache_bytes: int = 256 * 1024 * 1024
    #: Blobs held for others (mailbox role), per peer that stored them.
    mailbox_bytes_per_peer: int = 64 * 1024 * 1024
    mailbox_bytes_total: int = 1024 * 1024 * 1024
    mailbox_keep_ms: int = 7 * DAY_MS
    #: Serving: a token bucket per requesting peer (bytes per second, burst bytes).
    serve_rate: int = 8 * 1024 * 1024
    serve_burst: int = 32 * 1024 * 1024
    #: Attachments up to this size are fetched as soon as their message arrives.
    auto_fetch_bytes: int = 16 * 1024 * 1024
    #: Chunks asked ahead per holder, and holders used at once by one download.
    window: int = 8
    max_sources: int = 4
    #: How long a holder may stay silent before it counts as gone (ms).
    idle_timeout_ms: int = 20_000

    def __post_init__(self) -> None:
        if min(self.serve_rate, self.serve_burst, self.window, self.max_sources) < 1:
            raise ConfigError("blob serving rate, burst, window and sources must be positive")


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeConfig:
    home: Path
    net: NetConfig = field(default_factory=NetConfig)
    mailbox: MailboxConfig = field(default_factory=MailboxConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    blobs: BlobConfig = field(default_factory=BlobConfig)
    #: Shown to contacts and to nearby peers; optional.
    display_name: str | None = None
    #: Events held per ``node.events()`` stream before it starts dropping (see events.py).
    event_buffer: int = 1024
    #: Serve the local RPC / control socket (``<home>/rpc.sock``): read by whoever runs
    #: the node with its API (``p2pchat node run``, ``aio.run_node_in_thread``,
    #: :func:`p2pchat.api.open_api`); the node itself never serves it.
    rpc: bool = True
    #: Also serve the RPC on 127.0.0.1:<port> (``None``: unix socket only).
    rpc_tcp_port: int | None = None
    #: How often the node checks that its home (and store file) are still there and
    #: writable; when not, it stops (see :mod:`p2pchat.node.health`).
    home_check_ms: int = 2_000

    def __post_init__(self) -> None:
        if self.display_name is not None and not 0 < len(self.display_name) <= 64:
            raise ConfigError("a display name has 1 to 64 characters")
        if self.event_buffer < 2:
            raise ConfigError("event_buffer must be at least 2")
        if self.home_check_ms <= 0:
            raise ConfigError("home_check_ms must be positive")

    @classmethod
    def from_mapping(cls, home: Path, values: dict[str, Any]) -> NodeConfig:
        """Build from ``config.json``-style values (the keys ``p2pchat node run`` saves).

        Known keys: ``listen`` (host), ``port``, ``bootstrap`` (list of multiaddrs),
        ``dht_mode``, ``mdns``/``nearby`` (bool), ``relay`` (bool: dial through relays and,
        behind NAT, reserve with them; default on), ``relay_service`` (bool: relay for
        others while publicly reachable; default on), ``hole_punching`` (bool, default
        on), ``upnp`` (bool, default off), ``display_name``,
        ``mailbox`` (bool), ``mailbox_use`` (list of peer ids), ``rpc_tcp_port``,
        ``max_inbound_per_ip`` (inbound connections held from one IP; default 16: many
        nodes on one host, as in ``bench/scale_bench.py``, need more). Unknown keys are
        refused, so a typo is not silently ignored.
        """
        known = {
            "listen", "port", "bootstrap", "dht_mode", "mdns", "nearby", "relay",
            "relay_service", "hole_punching", "upnp", "display_name", "mailbox",
            "mailbox_use", "rpc_tcp_port", "max_inbound_per_ip",
        }  # fmt: skip
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        try:
            net = NetConfig(
                listen_hosts=(str(values.get("listen") or "0.0.0.0"),),  # noqa: S104
                port=int(values.get("port", DEFAULT_PORT)),
                bootstrap=tuple(str(a) for a in values.get("bootstrap") or ()),
                dht_mode=values.get("dht_mode", "server"),
                mdns=bool(values.get("mdns", values.get("nearby", False))),
                relay_client=bool(values.get("relay", True)),
                auto_relay=bool(values.get("relay", True)),
                relay_hop=bool(values.get("relay_service", True)),
                hole_punching=bool(values.get("hole_punching", True)),
                upnp=bool(values.get("upnp", False)),
            )
            if "max_inbound_per_ip" in values:
                net = dataclasses.replace(net, max_inbound_per_ip=int(values["max_inbound_per_ip"]))
            return cls(
                home=home,
                net=net,
                display_name=values.get("display_name"),
                mailbox=MailboxConfig(
                    enabled=bool(values.get("mailbox", False)),
                    use=tuple(str(p) for p in values.get("mailbox_use") or ()),
                ),
                rpc_tcp_port=values.get("rpc_tcp_port"),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None

    def replace(self, **changes: Any) -> NodeConfig:
        return dataclasses.replace(self, **changes)
