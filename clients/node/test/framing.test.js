import assert from "node:assert/strict";
import { test } from "node:test";

import { FrameDecoder, P2PChatError, decodeVarint, encodeFrame, encodeVarint } from "../src/index.js";

/** @param {string} hex */
const bytes = (hex) => Uint8Array.from(Buffer.from(hex, "hex"));

/** @param {() => unknown} fn @param {string} reason */
function assertWire(fn, reason) {
  assert.throws(fn, (err) => err instanceof P2PChatError && err.code === -32700 && err.data.reason === reason);
}

test("varints match the multiformats examples", () => {
  const cases = [[0, "00"], [1, "01"], [127, "7f"], [128, "8001"], [255, "ff01"], [300, "ac02"], [16384, "808001"]];
  for (const [value, hex] of cases) {
    assert.deepEqual(encodeVarint(value), bytes(hex));
    assert.deepEqual(decodeVarint(bytes(hex)), { value, next: hex.length / 2 });
  }
});

test("varints beyond 32 bits round-trip (no bit-op truncation)", () => {
  for (const value of [2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
    assert.equal(decodeVarint(encodeVarint(value)).value, value);
  }
});

test("a truncated varint needs more data", () => {
  assert.equal(decodeVarint(bytes("80")), null);
  assert.equal(decodeVarint(bytes("")), null);
});

test("non-minimal and over-long varints are refused", () => {
  assertWire(() => decodeVarint(bytes("8000")), "bad-varint");
  assertWire(() => decodeVarint(bytes("ffffffffffffffffff01")), "bad-varint");
});

test("frames survive any split of the stream", () => {
  const payloads = [bytes("aa"), new Uint8Array(300).fill(7), new Uint8Array(0), bytes("0102")];
  const stream = Buffer.concat(payloads.map((p) => encodeFrame(p)));
  for (let step = 1; step <= stream.length; step += 7) {
    const decoder = new FrameDecoder();
    const got = [];
    for (let at = 0; at < stream.length; at += step) {
      decoder.feed(stream.subarray(at, at + step));
      for (let f = decoder.nextFrame(); f !== null; f = decoder.nextFrame()) got.push(f);
    }
    assert.deepEqual(got, payloads);
    assert.ok(decoder.atBoundary);
  }
});

test("an oversized frame is refused from its prefix, before the body arrives", () => {
  const decoder = new FrameDecoder({ maxFrame: 100 });
  decoder.feed(encodeVarint(101));
  assertWire(() => decoder.nextFrame(), "frame-too-large");
  assertWire(() => encodeFrame(new Uint8Array(101), { maxFrame: 100 }), "frame-too-large");
});

test("a frame of exactly the cap is accepted", () => {
  const decoder = new FrameDecoder({ maxFrame: 100 });
  decoder.feed(encodeFrame(new Uint8Array(100), { maxFrame: 100 }));
  assert.equal(decoder.nextFrame()?.length, 100);
});
