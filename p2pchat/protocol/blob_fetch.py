"""The download of one blob from several holders at once (sans-IO).

:class:`Download` decides which chunks to ask which holder for, checks everything that
arrives, and says when the blob is complete or why it cannot be. The trio code in
``p2pchat/blobs/`` only moves frames. Rules:

* the manifest is taken from the first holder that sends one matching the blob id;
* a chunk is requested from one holder at a time (no duplicates in flight), the lowest
  missing index first, each holder at most ``window`` chunks ahead and at most its fair
  share of what is left (so that every holder takes part from the start);
* a chunk whose hash does not match the manifest drops the holder that sent it
  (``bad-chunk``), and the chunk is asked elsewhere; a holder that lacks a chunk
  (``blob.none`` ``missing``) is not asked for it again;
* a holder that vanishes gives its in-flight chunks back;
* ``have`` (chunks already held, e.g. after a restart) makes resumption free: only the
  rest is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pchat.errors import WireError

from .blob import Manifest, blob_id_of

__all__ = ["Download", "SourceState"]


@dataclass
class SourceState:
    in_flight: set[int] = field(default_factory=set)
    lacks: set[int] = field(default_factory=set)
    received: int = 0
    failed: str | None = None


class Download:
    def __init__(
        self,
        blob_id: bytes,
        *,
        manifest: Manifest | None = None,
        have: set[int] | None = None,
        window: int = 8,
    ) -> None:
        if manifest is not None and manifest.blob_id != blob_id:
            raise ValueError("the manifest is not that blob's")
        self.blob_id = blob_id
        self.manifest = manifest
        self.have: set[int] = set(have or ())
        self.window = window
        self.sources: dict[str, SourceState] = {}

    # -- holders ------------------------------------------------------------------------

    def add_source(self, peer: str) -> None:
        self.sources.setdefault(peer, SourceState())

    def source_failed(self, peer: str, reason: str) -> None:
        """``peer`` is gone (or misbehaved): its in-flight chunks go back to the pool."""
        state = self.sources.get(peer)
        if state is not None and state.failed is None:
            state.failed = reason
            state.in_flight.clear()

    def live_sources(self) -> list[str]:
        return [p for p, s in self.sources.items() if s.failed is None]

    # -- manifest -----------------------------------------------------------------------

    def on_manifest(self, peer: str, data: bytes) -> Manifest:
        """Check a manifest against the blob id; a wrong one fails the holder."""
        if self.manifest is not None:
            return self.manifest
        if blob_id_of(data) != self.blob_id:
            self.source_failed(peer, "bad-manifest")
            raise WireError("bad-manifest", "the manifest does not hash to the blob id")
        manifest = Manifest.from_bytes(data, max_size=len(data))
        self.manifest = manifest
        return manifest

    # -- chunks -------------------------------------------------------------------------

    def _missing(self) -> list[int]:
        assert self.manifest is not None
        busy = set().union(*(s.in_flight for s in self.sources.values()))
        return [i for i in range(self.manifest.chunks) if i not in self.have and i not in busy]

    def assign(self, peer: str) -> list[int]:
        """The chunks ``peer`` should be asked for now (possibly none); marks them in flight."""
        state = self.sources.get(peer)
        if state is None or state.failed is not None or self.manifest is None:
            return []
        # A fair share of what is left, so that every holder takes part from the start.
        live = len(self.live_sources())
        share = -(-(self.manifest.chunks - len(self.have)) // live)
        room = min(self.window, share) - len(state.in_flight)
        if room <= 0:
            return []
        picked = [i for i in self._missing() if i not in state.lacks][:room]
        state.in_flight.update(picked)
        return picked

    def on_chunk(self, peer: str, index: int, data: bytes) -> bool:
        """A chunk arrived: True if it is new and verified (the caller stores it)."""
        state = self.sources.get(peer)
        if state is None or state.failed is not None or self.manifest is None:
            return False
        state.in_flight.discard(index)
        if not self.manifest.verify(index, data):
            self.source_failed(peer, "bad-chunk")
            return False
        if index in self.have:
            return False
        self.have.add(index)
        state.received += 1
        return True

    def on_missing(self, peer: str, indexes: tuple[int, ...]) -> None:
        state = self.sources.get(peer)
        if state is None:
            return
        for i in indexes:
            state.in_flight.discard(i)
            state.lacks.add(i)

    def on_refused(self, peer: str, indexes: tuple[int, ...]) -> None:
        """Refused for now (rate-limited, busy): back to the pool, may be asked again."""
        state = self.sources.get(peer)
        if state is not None:
            for i in indexes:
                state.in_flight.discard(i)

    # -- outcome ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.manifest is not None and len(self.have) == self.manifest.chunks

    def stuck(self) -> str | None:
        """Why the download cannot finish with the holders it has, or ``None``."""
        if self.done:
            return None
        live = self.live_sources()
        if not live:
            reasons = sorted({s.failed or "" for s in self.sources.values()})
            return "no holder could send it" + (f" ({', '.join(reasons)})" if reasons else "")
        if self.manifest is None:
            return None
        busy = any(self.sources[p].in_flight for p in live)
        if busy:
            return None
        missing = [i for i in range(self.manifest.chunks) if i not in self.have]
        if all(i in self.sources[p].lacks for p in live for i in missing):
            return f"no holder has chunk {missing[0]} (of {self.manifest.chunks})"
        return None

    def progress(self) -> tuple[int, int]:
        """(verified ciphertext bytes, total ciphertext bytes); (0, 0) before the manifest."""
        if self.manifest is None:
            return 0, 0
        m = self.manifest
        return sum(m.cipher_len(i) for i in self.have), m.cipher_size
