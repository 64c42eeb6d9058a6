"""``max_inbound_per_ip`` in a home's config.json (many nodes on one host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat.config import NodeConfig
from p2pchat.errors import ConfigError


def test_max_inbound_per_ip_is_read_and_defaults_to_the_net_default(tmp_path: Path) -> None:
    assert NodeConfig.from_mapping(tmp_path, {}).net.max_inbound_per_ip == 16
    config = NodeConfig.from_mapping(tmp_path, {"max_inbound_per_ip": 256})
    assert config.net.max_inbound_per_ip == 256
    with pytest.raises(ConfigError):
        NodeConfig.from_mapping(tmp_path, {"max_inbound_per_ip": 0})
