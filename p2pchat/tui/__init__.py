"""``p2pchat chat``: a terminal messenger on Textual, a client of the node's RPC only.

It talks to a running node exactly as any other app does (:mod:`p2pchat.aio`, the
public RPC of ``protocol-spec/rpc.md``): no back doors. Layout: :mod:`.app` (the app
and navigation), :mod:`.screens` (one Screen class per screen), :mod:`.widgets`,
:mod:`.link` (connection and resumable events), :mod:`.model` (values and formatting),
:mod:`.inert` (peer text made harmless), one stylesheet ``chat.tcss``.
"""

from p2pchat.tui.app import ChatApp

__all__ = ["ChatApp"]
