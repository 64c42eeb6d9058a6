"""Interest groups around the sans-IO group engine (:mod:`p2pchat.protocol.group_engine`).

:mod:`.service` (:class:`~p2pchat.groups.service.Groups`: the node-facing operations),
:mod:`.effects` (storing accepted events, announcing them, running the engine's effects),
:mod:`.sender_keys` (group keys sent over DMs),
:mod:`.discovery` (DHT group and topic records), :mod:`.gossip` (gossipsub and the
anti-entropy sync streams) and :mod:`.live` (the live-comment backlog).
"""
