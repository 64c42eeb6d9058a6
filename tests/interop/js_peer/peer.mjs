// A foreign libp2p peer (js-libp2p) that talks to a running p2pchat node, using only
// protocol-spec/: it joins the node's DHT, fetches and checks the node's prekey bundle
// record and the group's record, follows the group's gossip (verifying every post per
// wire.md §5 and §9.1), then joins the (open, public) group and posts into it.
//
//   node peer.mjs '{"bootstrap": "/ip4/127.0.0.1/tcp/4001/p2p/12D3...", "group": "<hex>",
//                   "text": "hello from js", "expect_posts": 1, "timeout_ms": 60000}'
//
// Reports one JSON object per line on stdout ({"step": ...}); exits 0 after its own post
// was published and stdin was closed (the caller checks the p2pchat side), 1 on failure.
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { gossipsub } from '@libp2p/gossipsub'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { randomBytes } from 'node:crypto'
import * as p2p from './p2pchat.mjs'

const args = JSON.parse(process.argv[2])
const say = (step, fields = {}) => process.stdout.write(JSON.stringify({ step, ...fields }) + '\n')
const now = () => Date.now()
const deadline = now() + (args.timeout_ms ?? 60000)
const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

function remaining () {
  const left = deadline - now()
  if (left <= 0) throw new Error('timed out')
  return left
}

async function until (what, predicate, intervalMs = 100) {
  while (!(await predicate())) {
    if (now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

// The device key IS the libp2p Ed25519 host key (wire.md §1); the account key certifies it.
const deviceSeed = new Uint8Array(randomBytes(32))
const accountSeed = new Uint8Array(randomBytes(32))
const privateKey = await generateKeyPairFromSeed('Ed25519', deviceSeed)
const deviceKey = privateKey.publicKey.raw

// DHT: the p2pchat namespace gets the validator and selector of wire.md §10.
const validators = { p2pchat: async (key, value) => { p2p.validateRecord(textDecoder.decode(key), value, now()) } }
const selectors = { p2pchat: (key, values) => p2p.selectRecord(textDecoder.decode(key), values, now()) }

const node = await createLibp2p({
  privateKey,
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    // passthroughMapper: the default mapper drops peers with only private addresses (127.0.0.1)
    dht: kadDHT({ protocol: '/ipfs/kad/1.0.0', clientMode: true, validators, selectors, peerInfoMapper: passthroughMapper }),
    pubsub: gossipsub({ globalSignaturePolicy: 'StrictSign', heartbeatInterval: 1000, D: 6, Dlo: 4, Dhi: 12, emitSelf: false })
  }
})

let failed = false
try {
  await run()
} catch (err) {
  failed = true
  say('error', { message: String(err?.stack ?? err) })
} finally {
  await node.stop()
  process.exit(failed ? 1 : 0)
}

async function run () {
  const bootstrap = multiaddr(args.bootstrap)
  const nodePeer = peerIdFromString(bootstrap.getComponents().find((c) => c.name === 'p2p').value)
  const nodeDevice = nodePeer.publicKey.raw // the p2pchat node's device key
  await node.dial(bootstrap, { signal: AbortSignal.timeout(remaining()) })
  // Identify tells us the node speaks Kademlia; only then is it in our routing table.
  await until('identify', async () => (await node.peerStore.get(nodePeer)).protocols.includes('/ipfs/kad/1.0.0'))
  say('connected', { peer: nodePeer.toString(), protocols: (await node.peerStore.get(nodePeer)).protocols })

  // 1. The node's prekey bundle record: DHT GET_VALUE, our validator, then the bundle.
  const prekeyKey = p2p.dhtKey('prekeys', nodeDevice)
  const prekeyRecord = await getRecord(prekeyKey)
  if (!Buffer.from(prekeyRecord.key).equals(Buffer.from(nodeDevice))) throw new Error('prekey record of another device')
  const bundle = p2p.checkBundle(prekeyRecord.body.bundle, nodeDevice, now())
  say('prekeys', { account: p2p.hex(bundle.account), seq: prekeyRecord.seq })

  // 2. The group record gives the genesis (its id is the group id).
  const group = p2p.fromHex(args.group)
  const groupRecord = await getRecord(p2p.dhtKey('group', group))
  const genesis = p2p.decodeEvent(groupRecord.body.gen)
  if (p2p.hex(genesis.id) !== args.group) throw new Error('group record for another group')
  const descriptor = genesis.b.desc
  say('group', { name: descriptor.name, kind: descriptor.kind, join: descriptor.rules.join })

  // 3. Follow the group's gossip: every message is one sync.batch envelope signed by the
  //    gossip publisher's device; every run is authenticated (§9.1).
  const topic = `/p2pchat/group/${args.group}`
  const known = new Map([[p2p.hex(genesis.id), genesis]])
  const posts = []
  node.services.pubsub.addEventListener('message', (evt) => {
    const msg = evt.detail
    if (msg.topic !== topic || msg.type !== 'signed') return
    try {
      const { kind, payload } = p2p.openEnvelope(msg.data, msg.from.publicKey.raw)
      if (kind !== 'sync.batch' || p2p.hex(payload.g) !== args.group) throw new p2p.Refused('unexpected-kind')
      for (const run of payload.runs) {
        for (const ev of p2p.authenticateRun(run, group)) {
          known.set(p2p.hex(ev.id), ev)
          if (ev.k === 'post') {
            posts.push(ev)
            say('verified', { kind: ev.k, id: p2p.hex(ev.id), text: ev.b.c.text, author: p2p.hex(ev.aa) })
          }
        }
      }
    } catch (err) {
      say('refused', { reason: err.reason ?? 'error', message: err.message })
    }
  })
  node.services.pubsub.subscribe(topic)
  await until('the node in the topic mesh', () =>
    node.services.pubsub.getSubscribers(topic).some((p) => p.equals(nodePeer)))
  say('subscribed', { topic })
  await until(`${args.expect_posts} verified posts`, () => posts.length >= (args.expect_posts ?? 1))

  // 4. Join (open group) and post: a run of two events, the first with our certificate.
  const cert = p2p.makeCert(accountSeed, deviceKey, now() - 1000)
  const tips = tipsOf(known)
  const lt = 1 + Math.max(...tips.map((e) => e.lt))
  const account = cert[0]
  const join = p2p.signEvent({
    g: group, ad: deviceKey, aa: account, seq: 1, deps: tips.map((e) => e.id), lt, ts: now(),
    k: 'member.join', b: {}, cert: p2p.encode(cert)
  }, deviceSeed)
  const joinId = p2p.eventId(join)
  const post = p2p.signEvent({
    g: group, ad: deviceKey, aa: account, seq: 2, prev: joinId, deps: [], lt: lt + 1, ts: now(),
    k: 'post', b: { c: { type: 'p2pchat/text', body: {}, text: args.text } }
  }, deviceSeed)
  const batch = { g: group, runs: [{ d: deviceKey, evs: [join, post] }] }
  const envelope = p2p.sealEnvelope('sync.batch', batch, deviceSeed, now())
  await node.services.pubsub.publish(topic, envelope)
  say('posted', { account: p2p.hex(account), device: p2p.hex(deviceKey), join: p2p.hex(joinId), post: p2p.hex(p2p.eventId(post)) })

  // The caller closes stdin once the p2pchat node shows our post (or the deadline passes).
  await Promise.race([
    new Promise((resolve) => { process.stdin.on('end', resolve); process.stdin.on('close', resolve); process.stdin.resume() }),
    new Promise((resolve, reject) => setTimeout(() => reject(new Error('timed out waiting for stdin to close')), remaining()))
  ])
}

async function getRecord (key) {
  const values = []
  while (values.length === 0) { // the routing table may still be filling: ask again
    try {
      for await (const event of node.services.dht.get(textEncoder.encode(key), { signal: AbortSignal.timeout(remaining()) })) {
        if (event.name === 'VALUE') values.push(event.value)
      }
    } catch (err) {
      if (err.name !== 'NotFoundError') throw err
    }
    if (values.length === 0) await new Promise((resolve) => setTimeout(resolve, 250))
    remaining()
  }
  // kad-dht already ran our validator on each value; select and re-check the best one.
  const best = p2p.selectRecord(key, values, now())
  return p2p.validateRecord(key, values[best], now())
}

// Held events that no other held event references (groups.md §3), newest first, <= 32.
function tipsOf (events) {
  const referenced = new Set()
  for (const ev of events.values()) {
    if (ev.prev) referenced.add(p2p.hex(ev.prev))
    for (const d of ev.deps ?? []) referenced.add(p2p.hex(d))
  }
  return [...events.values()].filter((e) => !referenced.has(p2p.hex(e.id)))
    .sort((a, b) => b.lt - a.lt || Buffer.compare(Buffer.from(b.id), Buffer.from(a.id))).slice(0, 32)
}
