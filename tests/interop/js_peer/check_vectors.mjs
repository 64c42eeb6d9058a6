// Cross-language check of protocol-spec/vectors/groups/: tag folding and topic keys
// (wire.md §10.1) and invite hashes (groups.md §5), computed in JavaScript from the spec.
//   node check_vectors.mjs <protocol-spec/vectors/groups>
import fs from 'node:fs'
import path from 'node:path'
import * as p2p from './p2pchat.mjs'

const dir = process.argv[2]
const read = (name) => JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8'))
const failures = []

const tags = read('tags.json').tags
for (const v of tags) {
  const folded = p2p.foldTag(v.tag)
  const key = p2p.hex(p2p.topicKey(v.tag))
  if (folded !== v.folded || key !== v.topic_key || p2p.dhtKey('topic', p2p.topicKey(v.tag)) !== v.dht_key) {
    failures.push(`tag ${JSON.stringify(v.tag)}: folded ${JSON.stringify(folded)}, key ${key}`)
  }
}

const pairs = read('invites.json').pairs
for (const pair of pairs) {
  const inv = p2p.hex(p2p.blake(p2p.fromHex(pair.secret), 'p2pchat-invite'))
  const invite = p2p.decodeEvent(p2p.fromHex(pair.invite.hex))
  const join = p2p.decodeEvent(p2p.fromHex(pair.join.hex))
  p2p.verifyMap('event', invite, invite.ad)
  p2p.verifyMap('event', join, join.ad)
  if (inv !== pair.inv || p2p.hex(invite.b.inv) !== inv || p2p.hex(join.b.secret) !== pair.secret) {
    failures.push(`invite ${pair.invite.label} -> ${pair.join.label}`)
  }
}

if (failures.length) {
  console.error(failures.join('\n'))
  process.exit(1)
}
console.log(JSON.stringify({ tags: tags.length, invites: pairs.length }))
