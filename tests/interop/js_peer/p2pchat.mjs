// The p2pchat rules a foreign peer needs, written from protocol-spec/ alone (no p2pchat
// code): the CBOR profile (wire.md §3), signatures and hashes (§4), the envelope (§5),
// group events and runs (§8, §9.1), DHT records (§10), prekey bundles and device
// certificates (crypto.md §3.2, §4) and tag folding (wire.md §10.1).
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import { blake2b } from '@noble/hashes/blake2.js'
import { ed25519 } from '@noble/curves/ed25519.js'

const utf8 = new TextEncoder()

export class Refused extends Error {
  constructor (reason, detail = '') {
    super(detail ? `${reason}: ${detail}` : reason)
    this.reason = reason
  }
}

export const hex = (bytes) => Buffer.from(bytes).toString('hex')
export const fromHex = (text) => new Uint8Array(Buffer.from(text, 'hex'))
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

// --- CBOR profile (wire.md §3): canonical only; re-encoding must give the same bytes ---

export function encode (value) {
  return cborEncode(value)
}

export function decode (bytes, maxSize) {
  if (bytes.length > maxSize) throw new Refused('too-large')
  let value
  try {
    value = cborDecode(bytes, { strict: true, rejectDuplicateMapKeys: true, allowIndefinite: false, allowUndefined: false })
  } catch (err) {
    throw new Refused('malformed', err.message)
  }
  if (!equal(encode(value), bytes)) throw new Refused('non-canonical')
  return value
}

// --- hashes and signatures (wire.md §4) ---

function person (text) {
  const out = new Uint8Array(16)
  out.set(utf8.encode(text))
  return out
}

export const blake = (data, personal) => blake2b(data, { dkLen: 32, personalization: person(personal) })
export const eventId = (eventBytes) => blake(eventBytes, 'p2pchat-event')

function withoutSig (map) {
  const copy = { ...map }
  delete copy.sig
  return copy
}

export function signedBytes (context, map) {
  return concat(utf8.encode(`p2pchat/v1/${context}`), new Uint8Array([0]), encode(withoutSig(map)))
}

export function verifyMap (context, map, key) {
  let ok = false
  try {
    ok = ed25519.verify(map.sig, signedBytes(context, map), key)
  } catch { ok = false }
  if (!ok) throw new Refused('bad-signature', context)
}

export function signMap (context, map, seed) {
  return { ...map, sig: ed25519.sign(signedBytes(context, map), seed) }
}

// --- topic tags (wire.md §10.1): NFKC, then per-code-point lower case ---

export const foldTag = (tag) => [...tag.normalize('NFKC')].map((c) => c.toLowerCase()).join('')
export const topicKey = (tag) => blake(utf8.encode(foldTag(tag)), 'p2pchat-topic')

// --- DHT records (wire.md §10) ---

const MAX_RECORD = { prekeys: 8192, devices: 8192, group: 81920 + 2048, topic: 16384, mailbox: 2048 }
export const dhtKey = (ns, key) => `/p2pchat/${ns}/${hex(key.subarray(0, 16))}`

export function validateRecord (dhtKeyText, bytes, now) {
  const parts = dhtKeyText.split('/')
  if (parts.length !== 4 || parts[1] !== 'p2pchat' || !(parts[2] in MAX_RECORD) || !/^[0-9a-f]{32}$/.test(parts[3])) {
    throw new Refused('bad-key')
  }
  const ns = parts[2]
  const record = decode(bytes, MAX_RECORD[ns])
  if (record.v !== 1) throw new Refused(record.v > 1 ? 'unsupported-version' : 'out-of-range', 'v')
  if (record.ns !== ns) throw new Refused('wrong-namespace')
  if (!(record.key instanceof Uint8Array) || record.key.length !== 32 || hex(record.key.subarray(0, 16)) !== parts[3]) {
    throw new Refused('wrong-key')
  }
  if (record.exp <= now) throw new Refused('expired')
  if (record.exp > now + 30 * 86400000) throw new Refused('out-of-range', 'exp')
  if (ns === 'group') {
    const genesis = decodeEvent(record.body.gen)
    if (genesis.k !== 'genesis' || !equal(genesis.id, record.key)) throw new Refused('wrong-key', 'genesis id')
    verifyMap('event', genesis, genesis.ad)
    if (!equal(record.signer, genesis.ad)) throw new Refused('wrong-signer')
  } else if (ns === 'topic') {
    if (!equal(topicKey(record.body.tag), record.key)) throw new Refused('wrong-key', 'tag')
  } else if (!equal(record.signer, record.key)) {
    throw new Refused('wrong-signer')
  }
  verifyMap('record', record, record.signer)
  return record
}

// Select (wire.md §10): highest seq, then latest exp, then bytewise smallest encoding.
export function selectRecord (dhtKeyText, values, now) {
  let best = -1
  let bestRecord = null
  values.forEach((bytes, index) => {
    let record
    try { record = validateRecord(dhtKeyText, bytes, now) } catch { return }
    if (bestRecord === null || record.seq > bestRecord.seq ||
        (record.seq === bestRecord.seq && (record.exp > bestRecord.exp ||
          (record.exp === bestRecord.exp && Buffer.compare(Buffer.from(bytes), Buffer.from(values[best])) < 0)))) {
      best = index
      bestRecord = record
    }
  })
  if (best < 0) throw new Refused('no-valid-record')
  return best
}

// --- device certificates and prekey bundles (crypto.md §3.2, §4) ---

export function checkCert (cert, now) {
  const [account, device, created, expires, sig] = cert
  const signed = encode(['p2pchat/device-cert/v1', account, device, created, expires])
  if (!ed25519.verify(sig, signed, account)) throw new Refused('bad-cert', 'signature')
  if ((expires !== null && now >= expires) || created > now + 600000) throw new Refused('bad-cert', 'expired')
  return { account, device }
}

export function makeCert (accountSeed, device, created) {
  const account = ed25519.getPublicKey(accountSeed)
  const signed = encode(['p2pchat/device-cert/v1', account, device, created, null])
  return [account, device, created, null, ed25519.sign(signed, accountSeed)]
}

export function checkBundle (bundleBytes, device, now) {
  const [identity, cert, prekey, sequence, sig] = decode(bundleBytes, 4096)
  const [account, dhKey, dhSig] = identity
  if (!ed25519.verify(dhSig, encode(['p2pchat/identity-dh/v1', account, dhKey]), account)) {
    throw new Refused('bad-bundle', 'identity DH signature')
  }
  if (!equal(cert[0], account)) throw new Refused('bad-bundle', 'certificate of another account')
  if (!ed25519.verify(sig, encode(['p2pchat/prekey-bundle/v1', identity, cert, prekey, sequence]), account)) {
    throw new Refused('bad-bundle', 'bundle signature')
  }
  if (prekey[0] !== 'x25519' || prekey[2].length !== 32) throw new Refused('bad-bundle', 'prekey type')
  checkCert(cert, now)
  if (!equal(cert[1], device)) throw new Refused('bad-bundle', 'certificate of another device')
  if (now >= prekey[3]) throw new Refused('bad-bundle', 'prekey expired')
  return { account, sequence }
}

// --- envelopes, events, runs (wire.md §5, §8, §9.1) ---

export function decodeEvent (bytes) {
  const event = decode(bytes, 81920)
  if ((event.g === undefined) !== (event.k === 'genesis')) throw new Refused('invalid', 'g')
  if ((event.prev === undefined) !== (event.seq === 1)) throw new Refused('invalid', 'prev')
  // id and bytes are not wire fields: non-enumerable, so re-encoding ignores them
  return Object.defineProperties(event, { id: { value: eventId(bytes) }, bytes: { value: bytes } })
}

export function openEnvelope (bytes, expectSigner) {
  const env = decode(bytes, 1048576)
  if (env.v !== 1) throw new Refused(env.v > 1 ? 'unsupported-version' : 'out-of-range', 'v')
  if (expectSigner && !equal(env.s, expectSigner)) throw new Refused('wrong-sender')
  verifyMap('envelope', env, env.s)
  return { kind: env.k, sender: env.s, payload: decode(env.p, env.p.length) }
}

export function sealEnvelope (kind, payload, seed, now) {
  const env = { v: 1, k: kind, s: ed25519.getPublicKey(seed), t: now, p: encode(payload) }
  return encode(signMap('envelope', env, seed))
}

// A run received without its history: links and Lamport inside the run, one signature.
export function authenticateRun (run, group) {
  const events = run.evs.map(decodeEvent)
  let prev = null
  for (const ev of events) {
    const g = ev.k === 'genesis' ? ev.id : ev.g
    if (!equal(g, group)) throw new Refused('wrong-group')
    if (!equal(ev.ad, run.d) || !equal(ev.aa, events[0].aa)) throw new Refused('broken-chain', 'author')
    if (prev !== null && (ev.seq !== prev.seq + 1 || !equal(ev.prev, prev.id) || ev.lt <= prev.lt)) {
      throw new Refused('broken-chain')
    }
    prev = ev
  }
  verifyMap('event', prev, prev.ad)
  return events
}

export function signEvent (fields, seed) {
  return encode(signMap('event', fields, seed))
}
