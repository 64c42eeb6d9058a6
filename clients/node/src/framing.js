/**
 * Stream framing, sans-IO: an unsigned-varint length prefix, then that many bytes.
 *
 * The multiformats unsigned varint (LEB128, at most 9 bytes, minimal encoding) used by
 * every p2pchat stream (wire.md §2, rpc.md §2). A length above the cap is refused as soon
 * as the prefix is read, before any of the body is buffered, so a hostile or broken peer
 * cannot make us hold more than one maximal frame.
 */

import { wireError } from "./errors.js";

/** The default largest payload (1 MiB), as the node announces in `limits.max_frame`. */
export const MAX_FRAME = 1 << 20;
const MAX_VARINT_BYTES = 9;

/**
 * @param {number} value a non-negative safe integer
 * @returns {Uint8Array}
 */
export function encodeVarint(value) {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError("varint out of range");
  }
  const out = [];
  let rest = value;
  for (;;) {
    const byte = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest === 0) {
      out.push(byte);
      return Uint8Array.from(out);
    }
    out.push(byte | 0x80);
  }
}

/**
 * Decode a varint at `offset`: `{value, next}`, or `null` if the buffer ends inside it.
 * Throws a parse-error {@link P2PChatError} (reason "bad-varint") for over-long or
 * non-minimal encodings, which the reference implementation also refuses.
 * @param {Uint8Array} buffer
 * @param {number} [offset]
 * @returns {{value: number, next: number} | null}
 */
export function decodeVarint(buffer, offset = 0) {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    if (offset + i >= buffer.length) {
      return null;
    }
    const byte = buffer[offset + i];
    value += (byte & 0x7f) * scale; // arithmetic, not bit ops: lengths can exceed 2^31
    scale *= 128;
    if ((byte & 0x80) === 0) {
      if (byte === 0 && i > 0) {
        throw wireError("bad-varint", "varint is not minimally encoded");
      }
      return { value, next: offset + i + 1 };
    }
  }
  throw wireError("bad-varint", "varint longer than 9 bytes");
}

/**
 * @param {Uint8Array} payload
 * @param {{maxFrame?: number}} [options]
 * @returns {Uint8Array} the length prefix followed by the payload
 */
export function encodeFrame(payload, { maxFrame = MAX_FRAME } = {}) {
  if (payload.length > maxFrame) {
    throw wireError("frame-too-large", `${payload.length} bytes exceeds ${maxFrame}`);
  }
  const prefix = encodeVarint(payload.length);
  const out = new Uint8Array(prefix.length + payload.length);
  out.set(prefix, 0);
  out.set(payload, prefix.length);
  return out;
}

/**
 * Incremental frame decoder: feed it chunks in any split, take whole payloads out.
 *
 * Chunks are kept as a list and joined only once a whole frame is there, so a 1 MiB
 * frame arriving in 64 KiB reads is copied once, not sixteen times.
 */
export class FrameDecoder {
  /** @param {{maxFrame?: number}} [options] */
  constructor({ maxFrame = MAX_FRAME } = {}) {
    this.maxFrame = maxFrame;
    /** @type {Uint8Array[]} */
    this.chunks = [];
    this.length = 0;
  }

  /** @param {Uint8Array} chunk */
  feed(chunk) {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
  }

  /** True when no partial frame is buffered. */
  get atBoundary() {
    return this.length === 0;
  }

  /**
   * A buffer starting with the first `n` buffered bytes, joining chunks if needed.
   * @param {number} n
   * @returns {Uint8Array}
   */
  #head(n) {
    const first = this.chunks[0];
    if (first.length >= n) {
      return first;
    }
    const joined = new Uint8Array(this.length);
    let at = 0;
    for (const chunk of this.chunks) {
      joined.set(chunk, at);
      at += chunk.length;
    }
    this.chunks = [joined];
    return joined;
  }

  /**
   * The next complete payload, or `null` if more data is needed.
   * @returns {Uint8Array | null}
   */
  nextFrame() {
    if (this.length === 0) {
      return null;
    }
    const header = decodeVarint(this.#head(Math.min(this.length, MAX_VARINT_BYTES)));
    if (header === null) {
      return null;
    }
    const { value: size, next: start } = header;
    if (size > this.maxFrame) {
      throw wireError("frame-too-large", `${size} bytes exceeds ${this.maxFrame}`);
    }
    const end = start + size;
    if (this.length < end) {
      return null;
    }
    const buffer = this.#head(end);
    const payload = new Uint8Array(buffer.subarray(start, end)); // a copy, never a Buffer view
    if (buffer.length === end) {
      this.chunks.shift();
    } else {
      this.chunks[0] = buffer.subarray(end);
    }
    this.length -= end;
    return payload;
  }
}
