#!/usr/bin/env node
/**
 * A tiny terminal chat over a running p2pchat node's RPC API.
 *
 *   node example/chat.mjs --home H info
 *   node example/chat.mjs --home H send <account> <text...>
 *   node example/chat.mjs --home H listen [--count N] [--json]
 *   node example/chat.mjs --home H groups join <invite link or group id>
 *   node example/chat.mjs --home H groups post <group> <text...>
 *   node example/chat.mjs --home H groups listen [--count N] [--json]
 *
 * `listen` prints incoming direct messages from the node's event stream until Ctrl-C
 * (or, with --count, after N messages); `groups listen` does the same for the messages
 * of every group the node is in. It uses nothing but the public client API, so it
 * doubles as an example to copy from.
 */

import { parseArgs } from "node:util";

import { Client, P2PChatError } from "../src/index.js";

const USAGE = `usage: chat.mjs --home HOME <command>
  info                        who this node is
  send <account> <text...>    send a direct message (account: 64 hex digits or a contact name)
  listen [--count N] [--json] print incoming messages (until Ctrl-C, or N messages)
  groups join <link>          join a group with an invite link (or an open group by id)
  groups post <group> <text...>   post in a group (group: id, unique name or id prefix)
  groups listen [--count N] [--json]   print new messages of your groups`;

/** @param {Client} client */
async function info(client) {
  const me = await client.call("node.info");
  console.log(`account     ${me.account}`);
  console.log(`fingerprint ${me.fingerprint}`);
  console.log(`peer id     ${me.peer_id}`);
}

/** @param {Client} client @param {string[]} args */
async function send(client, args) {
  const [to, ...words] = args;
  if (!to || words.length === 0) throw new UsageError("send needs an account and a text");
  const sent = await client.call("dm.send", { to, text: words.join(" ") });
  console.log(`queued ${sent.message_id ?? ""}`.trim());
}

/** @param {Client} client @param {string[]} args */
async function groupJoin(client, args) {
  const [invite] = args;
  if (!invite || args.length !== 1) throw new UsageError("groups join needs one invite link");
  const group = await client.call("groups.join", { invite });
  console.log(`joined ${group.group_id} ${group.name}`);
}

/** @param {Client} client @param {string[]} args */
async function groupPost(client, args) {
  const [group, ...words] = args;
  if (!group || words.length === 0) throw new UsageError("groups post needs a group and a text");
  const posted = await client.call("groups.post", { group, text: words.join(" ") });
  console.log(`posted ${posted.event_id}`);
}

/**
 * Print events of the given types; `author` says who wrote (DMs and groups alike: the
 * words of rpc.md "Vocabulary").
 * @param {Client} client @param {{count?: number, json: boolean, types: string[]}} options
 */
async function listen(client, { count, json, types }) {
  const sub = await client.subscribe({ types });
  process.once("SIGINT", () => void sub.close());
  // On stderr even with --json: scripts wait for this line to know the stream is live.
  console.error("listening for messages (Ctrl-C to stop)");
  let seen = 0;
  for await (const item of sub) {
    if (item.kind === "gap") {
      console.error("(some messages may have been missed while disconnected)");
      continue;
    }
    const data = /** @type {{author?: string, text: string}} */ (item.data);
    const who = data.author ?? "?";
    if (json) {
      console.log(JSON.stringify({ cursor: item.cursor, ...item.data }));
    } else {
      console.log(`${who.slice(0, 12)}…: ${data.text}`);
    }
    if (count !== undefined && ++seen >= count) break;
  }
}

class UsageError extends Error {}

const DMS = ["dm.received"];

/** @param {string | undefined} text @returns {number | undefined} */
function countOf(text) {
  const count = text === undefined ? undefined : Number.parseInt(text, 10);
  if (count !== undefined && !(count > 0)) throw new UsageError("--count must be positive");
  return count;
}

async function main() {
  const { values, positionals } = parseArgs({
    options: {
      home: { type: "string" },
      count: { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    allowPositionals: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const home = values.home ?? process.env.P2PCHAT_HOME;
  const [command, ...args] = positionals;
  if (!home || !command) throw new UsageError("pass --home (or P2PCHAT_HOME) and a command");
  const client = await Client.connect({ home, clientName: "chat.mjs" });
  try {
    if (command === "info") await info(client);
    else if (command === "send") await send(client, args);
    else if (command === "listen") {
      await listen(client, { count: countOf(values.count), json: values.json, types: DMS });
    } else if (command === "groups") {
      const [sub, ...rest] = args;
      if (sub === "join") await groupJoin(client, rest);
      else if (sub === "post") await groupPost(client, rest);
      else if (sub === "listen") {
        const types = ["group.message"];
        await listen(client, { count: countOf(values.count), json: values.json, types });
      } else throw new UsageError(`unknown groups command ${sub ?? "(none)"}`);
    } else throw new UsageError(`unknown command ${command}`);
  } finally {
    await client.close();
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UsageError) {
      console.error(`${err.message}\n${USAGE}`);
      process.exit(2);
    }
    if (err instanceof P2PChatError) {
      console.error(`error ${err.code} (${err.name}): ${err.message}`);
      process.exit(1);
    }
    throw err;
  },
);
