"""Direct messages between accounts.

:mod:`.service` (:class:`~p2pchat.dm.service.DirectMessages`: sending, contact
requests), :mod:`.outbox` (the durable outbox worker: windows, acks, retries),
:mod:`.receive` (incoming streams: batched durable commits and signed receipts),
:mod:`.sessions` (the ratchet session cache and one batch's working set),
:mod:`.streams` (pipelined frames over reusable streams) and :mod:`.mailbox`
(store-and-forward for offline peers).
"""
