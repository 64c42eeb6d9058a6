"""Finding groups through the DHT (mixed into :class:`p2pchat.groups.service.Groups`).

Group records (the genesis event, signed by its author's device) let anyone with a group
id join; topic records (advisory, any signer, highest seq wins) list public groups under
a case-folded tag, so a search needs no directory server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nacl.signing import SigningKey

from p2pchat_crypto.identity import Device

from ..errors import (
    NetworkError,
    NotFoundError,
    WireError,
)
from ..net.base import Network
from ..protocol.group_engine import GroupEngine
from ..protocol.records import (
    GroupRecord,
    TopicEntry,
    TopicRecord,
    dht_key,
    topic_key,
    validate_record,
)
from ..protocol.records import sign_record as sign_dht_record

__all__ = ["GroupDiscovery"]

logger = logging.getLogger(__name__)


class GroupDiscovery:
    """DHT group and topic records: publish ours, fetch genesis, search by tag."""

    _engines: dict[bytes, GroupEngine]
    _network: Network
    _device: Device
    _clock: Callable[[], int]
    _record_lifetime: int

    async def _fetch_genesis(self, group_id: bytes) -> tuple[bytes, tuple[str, ...]]:
        key = dht_key("group", group_id)
        for value in await self._network.dht.get(key):
            try:
                record = validate_record(key, value, now=self._clock(), full_key=group_id)
            except WireError:
                continue
            body = record.parsed
            if isinstance(body, GroupRecord):
                return body.genesis, body.peers
        raise NotFoundError("the group was not found in the DHT (is its creator online?)")

    async def _publish_records(self, group_id: bytes) -> None:
        engine = self._engines.get(group_id)
        if engine is None:
            return
        now = self._clock()
        expires = now + self._record_lifetime
        held = engine.log.get(group_id)  # (held from the start: the log begins with it)
        assert held is not None
        genesis = engine.log.with_bytes(held)  # (its bytes always stay in memory)
        signer = SigningKey(self._device.signing_seed())
        if genesis.event.author_device == self._device.public_key:
            record = sign_dht_record(
                GroupRecord(genesis=genesis.data, peers=(self._network.peer_id,)),
                ns="group",
                key=group_id,
                seq=now,
                expires=expires,
                signing_key=signer,
            )
            await self._network.dht.put(dht_key("group", group_id), record)
        descriptor = engine.descriptor
        if descriptor.kind == "private":
            return
        entry = TopicEntry(group=group_id, name=descriptor.name, kind=descriptor.kind)
        for tag in descriptor.tags:
            found = await self._topic(tag)
            seq = max((s for s, _ in found), default=0)
            entries = {e.group: e for _, r in found for e in r.groups}
            if group_id in entries and seq >= now - self._record_lifetime // 2:
                continue  # listed, and fresh enough
            entries[group_id] = entry
            merged = tuple(sorted(entries.values(), key=lambda e: e.group))[:64]
            record = sign_dht_record(
                TopicRecord(tag=tag, groups=merged),
                ns="topic",
                key=topic_key(tag),
                seq=max(seq + 1, now),
                expires=expires,
                signing_key=signer,
            )
            await self._network.dht.put(dht_key("topic", topic_key(tag)), record)

    async def _topic(self, tag: str) -> list[tuple[int, TopicRecord]]:
        key = dht_key("topic", topic_key(tag))
        try:
            values = await self._network.dht.get(key)
        except NetworkError:
            return []
        out = []
        for value in values:
            try:
                record = validate_record(key, value, now=self._clock(), full_key=topic_key(tag))
            except WireError:
                continue
            if isinstance(record.parsed, TopicRecord):
                out.append((record.seq, record.parsed))
        return out

    async def search(self, tag: str) -> list[dict[str, Any]]:
        """Groups announced under ``tag`` (no directory server: DHT rendezvous records),
        with the member count as far as this node has seen the group."""
        found: dict[bytes, TopicEntry] = {}
        for _, record in await self._topic(tag):
            for entry in record.groups:
                found.setdefault(entry.group, entry)
        results = []
        for group_id, entry in sorted(found.items(), key=lambda kv: kv[1].name):
            engine = self._engines.get(group_id)
            results.append(
                {
                    "group_id": group_id.hex(),
                    "name": entry.name,
                    "kind": entry.kind,
                    "joined": engine is not None,
                    "members_seen": None if engine is None else len(engine.state.members),
                }
            )
        return results
