"""Who this node is: the encrypted keystore, the home directory, peer ids, the local
prekeys and replay cache, and the DHT records that let others find the account.

:mod:`.home` (the node's directory), :mod:`.keystore` (the Argon2id-sealed identity),
:mod:`.keyfile` (that file in the home: read, write, open or create), :mod:`.peerid`
(libp2p peer ids without libp2p), :mod:`.local_keys` (prekeys, the replay cache,
session pickles) and :mod:`.directory` (bundle, device and mailbox records).

Nothing is imported here, so that the CLI's network-free commands (``keys``) load
neither trio nor libp2p: import the module you need.
"""
