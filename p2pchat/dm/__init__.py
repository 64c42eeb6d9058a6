"""Direct messages between accounts.

:mod:`.service` (:class:`~p2pchat.dm.service.DirectMessages`: sending, the durable
outbox, contact requests), :mod:`.receive` (incoming streams: batched durable commits
and signed receipts), :mod:`.sessions` (the ratchet session cache), :mod:`.streams`
(pipelined frames over reusable streams) and :mod:`.mailbox` (store-and-forward for
offline peers).
"""
