// The client against a scripted fake node on a unix socket: hello, calls, errors,
// timeouts, and a subscription that resumes after the node drops it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { inspect } from "node:util";

import { encode } from "@msgpack/msgpack";

import { Client, FrameDecoder, P2PChatError, decodePayload, encodeFrame } from "../src/index.js";

const TOKEN = "p2pc_" + "s3cr3t".repeat(7);
const dirs = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/**
 * A fake node: `handle(request, send, socket)` answers each request after hello.
 * Records every request it sees in `requests`.
 */
async function fakeNode(handle, { tcp = false } = {}) {
  const home = mkdtempSync(path.join(tmpdir(), "p2pc-"));
  dirs.push(home);
  writeFileSync(path.join(home, "rpc.token"), TOKEN + "\n");
  const requests = [];
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const decoder = new FrameDecoder();
    const send = (msg) => socket.write(encodeFrame(encode(msg)));
    socket.on("data", (chunk) => {
      decoder.feed(chunk);
      for (let f = decoder.nextFrame(); f; f = decoder.nextFrame()) {
        const req = decodePayload(f);
        requests.push(req);
        if (req.method === "rpc.hello") {
          if (req.params.token !== TOKEN) {
            send({ type: "response", id: 0, error: { code: 1101, name: "unauthenticated", message: "bad token" } });
            socket.end();
          } else {
            send({ type: "response", id: 0, result: { version: 1, epoch: "e1", node: { peer_id: "P" }, scopes: ["read"], limits: {} } });
          }
        } else {
          handle(req, send, socket);
        }
      }
    });
  });
  const where = tcp ? { host: "127.0.0.1", port: 0 } : { path: path.join(home, "rpc.sock") };
  await new Promise((resolve) => server.listen(where, resolve));
  const stop = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  return { home, requests, stop, port: tcp ? server.address().port : undefined };
}

test("calls resolve with results and reject with the node's error code", async () => {
  const node = await fakeNode((req, send) => {
    if (req.method === "node.info") send({ type: "response", id: req.id, result: { account_key: "ab" } });
    else if (req.method === "slow.call") {} // never answered
    else send({ type: "response", id: req.id, error: { code: 1001, name: "not-found", message: "no contact", data: { x: 1 } } });
  });
  const client = await Client.connect({ home: node.home, callTimeoutMs: 200 });
  try {
    assert.deepEqual(client.info.node, { peer_id: "P" });
    assert.deepEqual(node.requests[0].params, { versions: [1, 1], token: TOKEN, client: "p2pchat-node-client" });
    assert.deepEqual(await client.call("node.info"), { account_key: "ab" });
    await assert.rejects(client.call("contacts.get", { name: "carol" }), (err) => {
      assert.ok(err instanceof P2PChatError);
      assert.deepEqual([err.code, err.name, err.message, err.data], [1001, "not-found", "no contact", { x: 1 }]);
      return true;
    });
    await assert.rejects(client.call("slow.call"), (err) => err.code === 1006 && err.data.reason === "timeout");
  } finally {
    await client.close();
    await node.stop();
  }
  await assert.rejects(client.call("node.info"), (err) => err.code === 1009 && err.name === "closed");
});

test("a wrong token is refused, and the token never shows in inspect, JSON or errors", async () => {
  const node = await fakeNode(() => {});
  try {
    await assert.rejects(Client.connect({ home: node.home, token: "p2pc_wrong" }), (err) => {
      assert.equal(err.code, 1101);
      assert.ok(!err.message.includes("p2pc_wrong"));
      return true;
    });
    const client = await Client.connect({ home: node.home });
    for (const shown of [inspect(client, { depth: 10, showHidden: true }), JSON.stringify(client), String(client)]) {
      assert.ok(!shown.includes(TOKEN), shown);
    }
    await client.close();
  } finally {
    await node.stop();
  }
});

test("a node that picks a version outside our range is refused", async () => {
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.once("data", () => {
      const result = { version: 2, epoch: "e", node: {}, scopes: [], limits: {} };
      socket.write(encodeFrame(encode({ type: "response", id: 0, result })));
    });
  });
  await new Promise((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
  try {
    await assert.rejects(
      Client.connect({ port: server.address().port, token: TOKEN }),
      (err) => err.code === 1102 && err.name === "version-mismatch",
    );
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
});

test("TCP to a loopback port works with an explicit token", async () => {
  const node = await fakeNode((req, send) => send({ type: "response", id: req.id, result: { pong: true } }), { tcp: true });
  try {
    const client = await Client.connect({ port: node.port, token: TOKEN });
    assert.deepEqual(await client.call("rpc.ping"), { pong: true });
    assert.equal(inspect(client), `Client(127.0.0.1:${node.port}, open)`);
    await client.close();
    await assert.rejects(Client.connect({ port: node.port }), (err) => err.code === 1004); // no token, no home
  } finally {
    await node.stop();
  }
});

test("TCP is refused for anything but a loopback literal", async () => {
  await assert.rejects(Client.connect({ host: "192.0.2.1", port: 1, token: TOKEN }), (err) => err.code === 1004);
  await assert.rejects(Client.connect({ host: "localhost", port: 1, token: TOKEN }), (err) => err.code === 1004);
});

test("a subscription resumes after the node drops it, and reports a gap when told", async () => {
  let connection = 0;
  const node = await fakeNode((req, send, socket) => {
    if (req.method === "events.unsubscribe") {
      send({ type: "response", id: req.id, result: {} });
      return;
    }
    connection += 1;
    if (connection === 1) {
      send({ type: "response", id: req.id, result: { sub: 5, epoch: "e1", gap: false, last_cursor: 10, oldest_cursor: 1 } });
      send({ type: "event", sub: 5, cursor: 11, event: { type: "dm.received", text: "a" } });
      send({ type: "event", sub: 5, cursor: 12, event: { type: "dm.received", text: "b" } });
      send({ type: "close", error: { code: 1103, name: "slow-consumer", message: "too slow" } });
      socket.end();
    } else {
      // Resumed after cursor 12: the node replays 12 (a duplicate the client drops) and
      // 13, and says events were evicted in between.
      send({ type: "response", id: req.id, result: { sub: 1, epoch: "e1", gap: true, last_cursor: 13, oldest_cursor: 12 } });
      send({ type: "event", sub: 1, cursor: 12, event: { type: "dm.received", text: "b" } });
      send({ type: "event", sub: 1, cursor: 13, event: { type: "dm.received", text: "c" } });
    }
  });
  const client = await Client.connect({ home: node.home });
  try {
    const sub = await client.subscribe({ types: ["dm.received"] });
    const items = [];
    for await (const item of sub) {
      items.push(item.kind === "gap" ? `gap ${item.afterCursor}-${item.oldestCursor}` : `${item.cursor} ${item.data.text}`);
      if (items.length === 4) break;
    }
    assert.deepEqual(items, ["11 a", "12 b", "gap 12-12", "13 c"]);
    const subscribes = node.requests.filter((r) => r.method === "events.subscribe").map((r) => r.params);
    assert.deepEqual(subscribes, [{ types: ["dm.received"] }, { types: ["dm.received"], after_cursor: 12, epoch: "e1" }]);
    assert.equal(sub.lastCursor, 13);
    assert.equal(sub.epoch, "e1");
    assert.deepEqual(node.requests.at(-1), { type: "request", id: 2, method: "events.unsubscribe", params: { sub: 1 } });
  } finally {
    await client.close();
    await node.stop();
  }
});

test("a malformed frame from the node ends the connection with network-error", async () => {
  const node = await fakeNode((req, _send, socket) => {
    socket.write(encodeFrame(Uint8Array.from([0x82, 0xa1, 0x61, 0x01, 0xa1, 0x61, 0x02]))); // duplicate key
  });
  const client = await Client.connect({ home: node.home, reconnectTimeoutMs: 100 });
  try {
    await assert.rejects(client.call("node.info"), (err) => err.code === 1006 && err.data.reason === "malformed");
  } finally {
    await client.close();
    await node.stop();
  }
});

test("a malformed subscribe result ends the connection instead of confusing the stream", async () => {
  const node = await fakeNode((req, send) => send({ type: "response", id: req.id, result: { sub: "one" } }));
  const client = await Client.connect({ home: node.home, reconnectTimeoutMs: 100 });
  try {
    await assert.rejects(client.subscribe(), (err) => err.code === 1006 && err.data.reason === "malformed");
  } finally {
    await client.close();
    await node.stop();
  }
});

test("while the node is gone calls fail after reconnectTimeoutMs, and close() ends the wait", async () => {
  const node = await fakeNode((req, send) => {
    const result = req.method === "events.subscribe"
      ? { sub: 1, epoch: "e1", gap: false, last_cursor: 0, oldest_cursor: 1 }
      : {};
    send({ type: "response", id: req.id, result });
  });
  const client = await Client.connect({ home: node.home, reconnectTimeoutMs: 100 });
  try {
    const sub = await client.subscribe();
    const next = sub.next();
    await node.stop(); // the client starts reconnecting (its subscription wants a connection)
    // The first call may still reach the dying connection ("lost"); the next one waits
    // for a reconnect that cannot happen.
    await assert.rejects(client.call("rpc.ping"), (err) => err.code === 1006);
    await assert.rejects(client.call("rpc.ping"), (err) => err.code === 1006 && err.data.reason === "unreachable");
    await client.close();
    assert.deepEqual(await next, { value: undefined, done: true });
  } finally {
    await client.close();
  }
});

test("files: sendDm adds each file then sends their ids; getFile reports progress", async () => {
  const node = await fakeNode((req, send) => {
    const ok = (result) => send({ type: "response", id: req.id, result });
    if (req.method === "files.add") ok({ file_id: req.params.path === "/tmp/a.jpg" ? "aa11" : "bb22" });
    else if (req.method === "dm.send") ok({ message_id: "m1", files: req.params.files });
    else if (req.method === "events.subscribe") {
      ok({ sub: 7, epoch: "e1", gap: false, last_cursor: 0, oldest_cursor: 1 });
    } else if (req.method === "files.get") {
      const progress = (cursor, done) => send({
        type: "event", sub: 7, cursor,
        event: { type: "file.progress", blob_id: "aa11ff", direction: "down", done, total: 100, state: done === 100 ? "done" : "running", sources: 2 },
      });
      progress(1, 40);
      progress(2, 100);
      setTimeout(() => ok({ file_id: "aa11ff", path: req.params.out }), 20);
    } else ok({});
  });
  const client = await Client.connect({ home: node.home });
  try {
    const sent = await client.sendDm("bob", "two files", { files: ["/tmp/a.jpg", "/tmp/b.pdf"] });
    assert.deepEqual(sent.files, ["aa11", "bb22"]);
    const dm = node.requests.find((r) => r.method === "dm.send");
    assert.deepEqual(dm.params, { to: "bob", text: "two files", files: ["aa11", "bb22"] });
    const seen = [];
    const saved = await client.getFile("aa11", "/tmp/out", { onProgress: (p) => seen.push(p.done) });
    assert.equal(saved.path, "/tmp/out");
    assert.deepEqual(seen, [40, 100]);
    const get = node.requests.find((r) => r.method === "files.get");
    assert.deepEqual(get.params, { file: "aa11", out: "/tmp/out", overwrite: false });
  } finally {
    await client.close();
    await node.stop();
  }
});

test("files: upload progress, fetchFile, listFiles, and livePost names media by hash", async () => {
  const node = await fakeNode((req, send) => {
    const ok = (result) => send({ type: "response", id: req.id, result });
    const progress = (cursor, event) => send({ type: "event", sub: 9, cursor, event: { type: "file.progress", ...event } });
    if (req.method === "events.subscribe") ok({ sub: 9, epoch: "e1", gap: false, last_cursor: 0, oldest_cursor: 1 });
    else if (req.method === "files.add") {
      progress(1, { blob_id: "", name: "other.png", direction: "up", done: 5, total: 9, state: "running" });
      progress(2, { blob_id: "", name: "shoe.jpg", direction: "up", done: 3, total: 9, state: "running" });
      progress(3, { blob_id: "cc33", name: "shoe.jpg", direction: "up", done: 9, total: 9, state: "done" });
      setTimeout(() => ok({ file_id: "cc33" }), 20);
    } else if (req.method === "groups.share") ok({ event_id: "e1", image: req.params.image });
    else if (req.method === "files.fetch") {
      progress(4, { blob_id: "cc33", direction: "down", done: 9, total: 9, state: "done", sources: 3 });
      setTimeout(() => ok({ file_id: "cc33", complete: true }), 20);
    } else if (req.method === "files.list") ok([{ file_id: "cc33" }]);
    else if (req.method === "files.media_hash") ok({ media_hash: "ab".repeat(32), mime: "video/mp4", size: 7000, url: null });
    else if (req.method === "groups.live") ok({ event_id: "e2" });
    else ok({});
  });
  const client = await Client.connect({ home: node.home });
  try {
    const up = [];
    const card = { title: "Sneakers", url: "https://shop.example/s", image: "/photos/shoe.jpg" };
    const shared = await client.share("shop", card, { onProgress: (p) => up.push(`${p.name} ${p.done}`) });
    assert.equal(shared.image, "cc33");
    assert.deepEqual(up, ["shoe.jpg 3", "shoe.jpg 9"]); // only this file's events
    const down = [];
    const fetched = await client.fetchFile("cc33", { onProgress: (p) => down.push(p.sources) });
    assert.equal(fetched.complete, true);
    assert.deepEqual(down, [3]);
    assert.deepEqual(await client.listFiles(), [{ file_id: "cc33" }]);
    await client.livePost("movies", "what a scene", { media: "/films/film.mp4", offsetMs: 62_000 });
    const live = node.requests.find((r) => r.method === "groups.live");
    assert.deepEqual(live.params, {
      group: "movies", media_hash: "ab".repeat(32), mime: "video/mp4", size: 7000, offset_ms: 62_000, text: "what a scene",
    });
    const hashed = node.requests.find((r) => r.method === "files.media_hash");
    assert.deepEqual(hashed.params, { media: "/films/film.mp4" });
  } finally {
    await client.close();
    await node.stop();
  }
});

test("sendDms sends one dm.send_batch with the texts in order", async () => {
  const node = await fakeNode((req, send) => {
    const ok = (result) => send({ type: "response", id: req.id, result });
    if (req.method === "dm.send_batch") ok(req.params.texts.map((text, i) => ({ message_id: `m${i}`, text })));
    else ok({});
  });
  const client = await Client.connect({ home: node.home });
  try {
    const sent = await client.sendDms("bob", ["one", "two"]);
    assert.deepEqual(sent.map((m) => m.text), ["one", "two"]);
    const batch = node.requests.find((r) => r.method === "dm.send_batch");
    assert.deepEqual(batch.params, { to: "bob", texts: ["one", "two"] });
    await client.sendDms("bob", ["three"], { replyTo: "ab12" });
    const reply = node.requests.filter((r) => r.method === "dm.send_batch")[1];
    assert.deepEqual(reply.params, { to: "bob", texts: ["three"], reply_to: "ab12" });
  } finally {
    await client.close();
    await node.stop();
  }
});

test("devices: list, link, confirm, rename, revoke, and a history copy with its progress", async () => {
  const me = "aa".repeat(32);
  const laptop = "bb".repeat(32);
  const node = await fakeNode((req, send) => {
    const ok = (result) => send({ type: "response", id: req.id, result });
    const progress = (cursor, event) => send({ type: "event", sub: 5, cursor, event: { type: "device.history_progress", ...event } });
    if (req.method === "events.subscribe") ok({ sub: 5, epoch: "e1", gap: false, last_cursor: 0, oldest_cursor: 1 });
    else if (req.method === "devices.list") ok([{ device: me, this_device: true, state: "current" }]);
    else if (req.method === "devices.link") ok({ code: "p2pchat-link:x", expires: 1 });
    else if (req.method === "devices.confirm") ok({ device: laptop, accepted: req.params.accept });
    else if (req.method === "devices.rename") ok({ device: laptop, name: req.params.name });
    else if (req.method === "devices.revoke") ok({ device: laptop, state: "revoked" });
    else if (req.method === "devices.history_pending") ok(null);
    else if (req.method === "devices.history_confirm") {
      send({ type: "response", id: req.id, error: { code: 1001, name: "not-found", message: "no device is waiting for history" } });
    } else if (req.method === "devices.history_sync") {
      progress(1, { device: "cc".repeat(32), received: 9, total: 9, done: true, error: "" }); // another copy
      progress(2, { device: laptop, received: 64, total: 100, done: false, error: "" });
      progress(3, { device: laptop, received: 100, total: 100, done: true, error: "" });
      setTimeout(() => ok({ device: laptop, received: 100, imported: 100, total: 100, done: true }), 20);
    } else ok({});
  });
  const client = await Client.connect({ home: node.home });
  try {
    assert.equal((await client.listDevices())[0].this_device, true);
    assert.equal((await client.linkDevice({ ttlMs: 60_000 })).code, "p2pchat-link:x");
    assert.equal((await client.confirmLink(true)).accepted, true);
    assert.equal((await client.renameDevice("bbbb", "laptop")).name, "laptop");
    assert.equal((await client.revokeDevice("laptop")).state, "revoked");
    assert.equal(await client.pendingHistory(), null);
    await assert.rejects(client.confirmHistory(true), (err) => err.code === 1001);
    const seen = [];
    const copied = await client.syncHistory("BBBB", { since: 5, onProgress: (p) => seen.push(p.received) });
    assert.equal(copied.done, true);
    assert.deepEqual(seen, [64, 100]); // only that device's progress
    const params = Object.fromEntries(node.requests.filter((r) => r.method.startsWith("devices.")).map((r) => [r.method, r.params]));
    assert.deepEqual(params, {
      "devices.list": {},
      "devices.link": { ttl_ms: 60_000 },
      "devices.confirm": { accept: true },
      "devices.rename": { device: "bbbb", name: "laptop" },
      "devices.revoke": { device: "laptop" },
      "devices.history_pending": {},
      "devices.history_confirm": { accept: true },
      "devices.history_sync": { device: "BBBB", since: 5 },
    });
    // Without onProgress nothing subscribes; max goes as given.
    const subscribes = node.requests.filter((r) => r.method === "events.subscribe").length;
    await client.syncHistory(laptop, { max: 10 });
    assert.equal(node.requests.filter((r) => r.method === "events.subscribe").length, subscribes);
    assert.deepEqual(node.requests.at(-1).params, { device: laptop, max: 10 });
  } finally {
    await client.close();
    await node.stop();
  }
});
