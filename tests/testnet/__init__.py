"""The testnet: many real nodes in an emulated network, for minutes (docs/testnet.md).

``python -m tests.testnet [SCENARIO]`` (``make testnet``) starts one ``p2pchat node run``
per node, each in its own network namespace (some behind NAT routers), drives a scenario
(``scenarios/*.toml``, :mod:`tests.testnet.scenario`) through the nodes' public RPC with
loss, partitions and churn, checks delivery and writes a report.
"""
