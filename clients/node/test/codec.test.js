import assert from "node:assert/strict";
import { test } from "node:test";

import { encode } from "@msgpack/msgpack";

import { DEFAULT_LIMITS, P2PChatError, decodePayload, encodeRequest, parseServerMessage } from "../src/index.js";

/** @param {string} hex */
const bytes = (hex) => Uint8Array.from(Buffer.from(hex.replaceAll(" ", ""), "hex"));

/** @param {() => unknown} fn @param {string} reason */
function assertWire(fn, reason) {
  assert.throws(fn, (err) => {
    assert.ok(err instanceof P2PChatError, String(err));
    assert.equal(err.code, -32700);
    assert.equal(err.data.reason, reason);
    return true;
  });
}

test("the rpc.md §10 ping payload decodes", () => {
  const payload = bytes("83 a4 74797065 a7 72657175657374 a2 6964 02 a6 6d6574686f64 a8 7270632e70696e67");
  assert.equal(payload.length, 34);
  assert.deepEqual(decodePayload(payload), { type: "request", id: 2, method: "rpc.ping" });
});

test("requests encode to a strict map the decoder accepts", () => {
  const params = { to: "ab".repeat(32), text: "héllo", n: 3, f: 1.5, raw: new Uint8Array([1, 2]), skip: undefined };
  const got = decodePayload(encodeRequest(7, "dm.send", params));
  assert.deepEqual(got, {
    type: "request", id: 7, method: "dm.send",
    params: { to: "ab".repeat(32), text: "héllo", n: 3, f: 1.5, raw: new Uint8Array([1, 2]) },
  });
});

test("values msgpack would mangle are refused when encoding", () => {
  for (const bad of [{ at: new Date(0) }, { m: new Map() }, { n: Number.NaN }, { n: Infinity }, { f: () => 1 }]) {
    assert.throws(() => encodeRequest(1, "x.y", bad), TypeError);
  }
  assert.throws(() => encodeRequest(-1, "x.y", {}), RangeError);
  assert.throws(() => encodeRequest(1, "", {}), TypeError);
  assert.throws(() => encodeRequest(1, "x.y", /** @type {any} */ ([])), TypeError);
});

test("strict profile: every rule of rpc.md §2 has its reason", () => {
  assertWire(() => decodePayload(bytes("")), "bad-msgpack");
  assertWire(() => decodePayload(bytes("81 a1 61")), "bad-msgpack"); // truncated
  assertWire(() => decodePayload(bytes("80 00")), "trailing-bytes");
  assertWire(() => decodePayload(bytes("91 01")), "not-a-map");
  assertWire(() => decodePayload(bytes("81 01 02")), "bad-key"); // int key
  assertWire(() => decodePayload(bytes("81 a1 61 81 c4 01 78 01")), "bad-key"); // bin key, nested
  assertWire(() => decodePayload(bytes("82 a1 61 01 a1 61 02")), "duplicate-key");
  assertWire(() => decodePayload(bytes("81 a1 61 d6 ff 00 00 00 00")), "ext-type"); // timestamp
  assertWire(() => decodePayload(bytes("81 a1 61 c7 01 05 00")), "ext-type");
  assertWire(() => decodePayload(bytes("81 a1 61 a1 ff")), "bad-msgpack"); // invalid UTF-8 value
  assertWire(() => decodePayload(bytes("81 a1 ff 01")), "bad-msgpack"); // invalid UTF-8 key
  assertWire(() => decodePayload(bytes("81 a1 61 c1")), "bad-msgpack"); // reserved byte
});

test("nesting: 32 containers pass, 33 are too deep", () => {
  /** @param {number} n */
  const nested = (n) => {
    let value = /** @type {unknown} */ (1);
    for (let i = 1; i < n; i++) value = [value];
    return encode({ v: value }); // the outer map is one more container
  };
  assert.ok(decodePayload(nested(32)));
  assertWire(() => decodePayload(nested(33)), "too-deep");
});

test("container caps are enforced", () => {
  const limits = { ...DEFAULT_LIMITS, maxArrayLength: 3 };
  assert.ok(decodePayload(encode({ a: [1, 2, 3] }), limits));
  assertWire(() => decodePayload(encode({ a: [1, 2, 3, 4] }), limits), "bad-msgpack");
});

test("server messages are validated like the reference client does", () => {
  assert.deepEqual(parseServerMessage({ type: "response", id: 3, result: { x: 1 } }), {
    kind: "response", id: 3, result: { x: 1 },
  });
  assert.deepEqual(
    parseServerMessage({ type: "response", id: null, error: { code: -32700, name: "parse-error", message: "m", data: { reason: "r" } } }),
    { kind: "error", id: null, error: { code: -32700, name: "parse-error", message: "m", data: { reason: "r" } } },
  );
  assert.deepEqual(parseServerMessage({ type: "event", sub: 1, cursor: 9, event: { type: "dm.received" } }), {
    kind: "event", sub: 1, cursor: 9, event: { type: "dm.received" },
  });
  assert.equal(parseServerMessage({ type: "close", error: { code: 1103, name: "slow-consumer", message: "m" } }).kind, "close");
  assertWire(() => parseServerMessage({ type: "response", id: 1, result: 1, extra: 2 }), "unknown-field");
  assertWire(() => parseServerMessage({ type: "response", id: 1 }), "missing-field");
  assertWire(() => parseServerMessage({ type: "response", id: -1, result: 1 }), "bad-field");
  assertWire(() => parseServerMessage({ type: "response", id: 2 ** 53, result: 1 }), "bad-field");
  assertWire(() => parseServerMessage({ type: "event", sub: 1, cursor: 1, event: [1] }), "bad-field");
  assertWire(() => parseServerMessage({ type: "close", error: { code: "x", name: "n", message: "m" } }), "bad-field");
  assertWire(() => parseServerMessage({ type: "hello" }), "bad-type-tag");
});

test("unknown error codes keep their number and get the generic name", () => {
  const err = P2PChatError.fromWire({ code: 4242, name: "future-thing", message: "later" });
  assert.equal(err.code, 4242);
  assert.equal(err.name, "error");
  const known = P2PChatError.fromWire({ code: 1001, name: "not-found", message: "no contact" });
  assert.equal(known.name, "not-found");
  assert.equal(known.message, "no contact");
});
