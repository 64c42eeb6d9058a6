/**
 * The RPC message codec: strict msgpack maps in, typed server messages out (rpc.md §2-3).
 *
 * The node is local, but any process of the user can listen on a socket path or port it
 * was told to use; and two implementations that disagree on what a frame means are a
 * bug farm. So payloads are checked against the spec's strict profile *before* they are
 * decoded: exactly one map, string keys only (at any depth), no repeated key, no ext
 * types (timestamps included), valid UTF-8, at most 32 nested containers, and the
 * container caps. `@msgpack/msgpack` then builds the values; its own checks (trailing
 * bytes, `__proto__` keys, length caps) stay on as a second line.
 */

import { decode, encode } from "@msgpack/msgpack";

import { wireError } from "./errors.js";

/**
 * @typedef {{maxStrLength: number, maxBinLength: number, maxArrayLength: number,
 *            maxMapLength: number, maxDepth: number}} DecodeLimits
 */

/** @type {Readonly<DecodeLimits>} The caps of rpc.md §2. */
export const DEFAULT_LIMITS = Object.freeze({
  maxStrLength: 1 << 20,
  maxBinLength: 1 << 20,
  maxArrayLength: 10_000,
  maxMapLength: 10_000,
  maxDepth: 32,
});

/** Largest request/subscription/cursor id: exact in a JavaScript number (rpc.md §3). */
export const ID_MAX = Number.MAX_SAFE_INTEGER;

/** An extension codec that refuses every ext type, in both directions. */
const NO_EXTENSIONS = {
  /** @returns {null} */
  tryToEncode() {
    return null;
  },
  /** @param {Uint8Array} _data @param {number} type */
  decode(_data, type) {
    throw wireError("ext-type", `msgpack ext type ${type} is not allowed`);
  },
};

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Walk one msgpack value without building it, enforcing the strict profile.
 * Returns the offset after the value; with `asKey`, the value must be a str and
 * its text is returned too (for the duplicate-key check).
 */
class Scanner {
  /** @param {Uint8Array} bytes @param {DecodeLimits} limits */
  constructor(bytes, limits) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.limits = limits;
    this.pos = 0;
  }

  /** @param {number} n */
  need(n) {
    if (this.pos + n > this.bytes.length) {
      throw wireError("bad-msgpack", "truncated payload");
    }
  }

  /** @param {number} width 1, 2 or 4 */
  uint(width) {
    this.need(width);
    const at = this.pos;
    this.pos += width;
    if (width === 1) return this.view.getUint8(at);
    if (width === 2) return this.view.getUint16(at);
    return this.view.getUint32(at);
  }

  /** @param {number} length */
  str(length) {
    if (length > this.limits.maxStrLength) {
      throw wireError("bad-msgpack", "string longer than the cap");
    }
    this.need(length);
    const raw = this.bytes.subarray(this.pos, this.pos + length);
    this.pos += length;
    try {
      return strictUtf8.decode(raw);
    } catch {
      throw wireError("bad-msgpack", "invalid UTF-8") ;
    }
  }

  /** @param {number} length */
  bin(length) {
    if (length > this.limits.maxBinLength) {
      throw wireError("bad-msgpack", "binary longer than the cap");
    }
    this.need(length);
    this.pos += length;
  }

  /** @param {number} depth */
  container(depth) {
    if (depth >= this.limits.maxDepth) {
      throw wireError("too-deep", `more than ${this.limits.maxDepth} nested containers`);
    }
  }

  /** @param {number} count @param {number} depth */
  array(count, depth) {
    this.container(depth);
    if (count > this.limits.maxArrayLength) {
      throw wireError("bad-msgpack", "array longer than the cap");
    }
    for (let i = 0; i < count; i++) {
      this.value(depth + 1);
    }
  }

  /** @param {number} count @param {number} depth */
  map(count, depth) {
    this.container(depth);
    if (count > this.limits.maxMapLength) {
      throw wireError("bad-msgpack", "map longer than the cap");
    }
    const seen = new Set();
    for (let i = 0; i < count; i++) {
      const key = this.key();
      if (seen.has(key)) {
        throw wireError("duplicate-key", "a map key appears twice");
      }
      seen.add(key);
      this.value(depth + 1);
    }
  }

  key() {
    this.need(1);
    const head = this.bytes[this.pos++];
    if (head >= 0xa0 && head <= 0xbf) return this.str(head & 0x1f);
    if (head === 0xd9) return this.str(this.uint(1));
    if (head === 0xda) return this.str(this.uint(2));
    if (head === 0xdb) return this.str(this.uint(4));
    throw wireError("bad-key", "map keys must be strings");
  }

  /** @param {number} depth */
  value(depth) {
    this.need(1);
    const head = this.bytes[this.pos++];
    if (head <= 0x7f || head >= 0xe0) return; // fixints
    if (head <= 0x8f) return this.map(head & 0x0f, depth);
    if (head <= 0x9f) return this.array(head & 0x0f, depth);
    if (head <= 0xbf) return void this.str(head & 0x1f);
    switch (head) {
      case 0xc0: // nil
      case 0xc2: // false
      case 0xc3: // true
        return;
      case 0xc4: return this.bin(this.uint(1));
      case 0xc5: return this.bin(this.uint(2));
      case 0xc6: return this.bin(this.uint(4));
      case 0xca: this.need(4); this.pos += 4; return; // float32
      case 0xcb: this.need(8); this.pos += 8; return; // float64
      case 0xcc: case 0xd0: this.need(1); this.pos += 1; return;
      case 0xcd: case 0xd1: this.need(2); this.pos += 2; return;
      case 0xce: case 0xd2: this.need(4); this.pos += 4; return;
      case 0xcf: case 0xd3: this.need(8); this.pos += 8; return;
      case 0xd9: return void this.str(this.uint(1));
      case 0xda: return void this.str(this.uint(2));
      case 0xdb: return void this.str(this.uint(4));
      case 0xdc: return this.array(this.uint(2), depth);
      case 0xdd: return this.array(this.uint(4), depth);
      case 0xde: return this.map(this.uint(2), depth);
      case 0xdf: return this.map(this.uint(4), depth);
      case 0xc7: case 0xc8: case 0xc9:
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        throw wireError("ext-type", "msgpack ext types are not allowed");
      default: // 0xc1 is never used
        throw wireError("bad-msgpack", "reserved msgpack type byte");
    }
  }
}

/**
 * Strictly decode one frame payload into a plain object with string keys.
 *
 * Throws a parse-error {@link P2PChatError} whose `data.reason` is one of the slugs of
 * the reference codec: "bad-msgpack", "trailing-bytes", "ext-type", "bad-key",
 * "duplicate-key", "too-deep", "not-a-map".
 * Integers beyond 2^53 lose precision (JavaScript numbers); the node keeps every id,
 * cursor and timestamp below that.
 * @param {Uint8Array} payload
 * @param {DecodeLimits} [limits]
 * @returns {Record<string, unknown>}
 */
export function decodePayload(payload, limits = DEFAULT_LIMITS) {
  if (payload.length === 0) {
    throw wireError("bad-msgpack", "empty payload");
  }
  const head = payload[0];
  const isMap = (head >= 0x80 && head <= 0x8f) || head === 0xde || head === 0xdf;
  const scanner = new Scanner(payload, limits);
  scanner.value(0);
  if (scanner.pos !== payload.length) {
    throw wireError("trailing-bytes", "data after the msgpack value");
  }
  if (!isMap) {
    throw wireError("not-a-map", "a frame holds one msgpack map");
  }
  try {
    return /** @type {Record<string, unknown>} */ (
      decode(payload, {
        extensionCodec: NO_EXTENSIONS,
        maxStrLength: limits.maxStrLength,
        maxBinLength: limits.maxBinLength,
        maxArrayLength: limits.maxArrayLength,
        maxMapLength: limits.maxMapLength,
      })
    );
  } catch (err) {
    if (err instanceof Error && "code" in err) throw err;
    throw wireError("bad-msgpack", err instanceof Error ? err.name : "decode failed");
  }
}

/**
 * Refuse values msgpack cannot carry faithfully, instead of letting the encoder guess
 * (a `Date` would become a timestamp ext the node refuses; a `Map` or class instance
 * would silently lose its contents; `NaN` is a float where the node wants an int).
 * @param {unknown} value
 * @param {number} depth
 */
function checkEncodable(value, depth) {
  if (depth > DEFAULT_LIMITS.maxDepth) {
    throw new TypeError("params nest too deeply");
  }
  if (value === null || typeof value === "boolean" || typeof value === "string") return;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError("params hold a non-finite number");
    return;
  }
  if (typeof value === "bigint") {
    if (value < -(1n << 63n) || value >= 1n << 64n) throw new TypeError("bigint beyond 64 bits");
    return;
  }
  if (value instanceof Uint8Array) return;
  if (Array.isArray(value)) {
    for (const item of value) checkEncodable(item, depth + 1);
    return;
  }
  if (typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    for (const item of Object.values(value)) {
      if (item !== undefined) checkEncodable(item, depth + 1);
    }
    return;
  }
  throw new TypeError(`params cannot hold a ${typeof value === "object" ? value.constructor?.name : typeof value}`);
}

/**
 * The payload of a request frame.
 * @param {number} id
 * @param {string} method
 * @param {Record<string, unknown>} params plain objects, arrays, strings, finite numbers,
 *   bigints, booleans, null and Uint8Array (sent as msgpack bin); `undefined` members are
 *   left out
 * @returns {Uint8Array}
 */
export function encodeRequest(id, method, params) {
  if (!Number.isSafeInteger(id) || id < 0) throw new RangeError("request id out of range");
  if (typeof method !== "string" || method.length === 0 || method.length > 128) {
    throw new TypeError("method must be a string of 1 to 128 characters");
  }
  checkEncodable(params, 0);
  if (params === null || Array.isArray(params) || typeof params !== "object") {
    throw new TypeError("params must be a plain object");
  }
  return encode(
    { type: "request", id, method, params },
    { extensionCodec: NO_EXTENSIONS, ignoreUndefined: true, useBigInt64: true },
  );
}

/**
 * @typedef {{code: number, name: string, message: string, data?: unknown}} WireErrorInfo
 * @typedef {{kind: "response", id: number, result: unknown, next?: Record<string, unknown>}} ResponseMessage
 * @typedef {{kind: "error", id: number | null, error: WireErrorInfo}} ErrorMessage
 * @typedef {{kind: "event", sub: number, cursor: number, event: Record<string, unknown>}} EventMessage
 * @typedef {{kind: "close", error: WireErrorInfo}} CloseMessage
 * @typedef {ResponseMessage | ErrorMessage | EventMessage | CloseMessage} ServerMessage
 */

/** @param {unknown} value */
function isMap(value) {
  return (
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value) &&
    !(value instanceof Uint8Array)
  );
}

/** @param {Record<string, unknown>} obj @param {string[]} allowed */
function only(obj, allowed) {
  const extra = Object.keys(obj).filter((k) => !allowed.includes(k));
  if (extra.length > 0) {
    throw wireError("unknown-field", extra.sort().join(", "));
  }
}

/** @param {Record<string, unknown>} obj @param {string} key */
function id(obj, key) {
  if (!(key in obj)) throw wireError("missing-field", key);
  const value = obj[key];
  if (!Number.isSafeInteger(value) || /** @type {number} */ (value) < 0) {
    throw wireError("bad-field", `${key} must be an id`);
  }
  return /** @type {number} */ (value);
}

/** @param {unknown} raw @returns {WireErrorInfo} */
function errorInfo(raw) {
  if (!isMap(raw)) throw wireError("bad-field", "error must be a map");
  const obj = /** @type {Record<string, unknown>} */ (raw);
  only(obj, ["code", "name", "message", "data"]);
  const { code, name, message } = obj;
  if (!Number.isSafeInteger(code)) throw wireError("bad-field", "error.code must be an int");
  if (typeof name !== "string") throw wireError("bad-field", "error.name must be a str");
  if (typeof message !== "string") throw wireError("bad-field", "error.message must be a str");
  const info = { code: /** @type {number} */ (code), name, message };
  return "data" in obj ? { ...info, data: obj.data } : info;
}

/**
 * Validate a decoded server frame, as the reference client does (rpc.md §3): unknown
 * frame-level keys are refused in version 1; keys inside results and events are the
 * method's business and are passed through.
 * @param {Record<string, unknown>} obj
 * @returns {ServerMessage}
 */
export function parseServerMessage(obj) {
  const kind = obj.type;
  if (typeof kind !== "string") throw wireError("bad-field", "type must be a str");
  if (kind === "response") {
    if ("error" in obj) {
      only(obj, ["type", "id", "error"]);
      const rawId = obj.id ?? null;
      return { kind: "error", id: rawId === null ? null : id(obj, "id"), error: errorInfo(obj.error) };
    }
    only(obj, ["type", "id", "result", "next"]);
    if (!("result" in obj)) throw wireError("missing-field", "result");
    const next = obj.next ?? null;
    if (next !== null && !isMap(next)) throw wireError("bad-field", "next must be a map");
    const msg = { kind: /** @type {const} */ ("response"), id: id(obj, "id"), result: obj.result };
    return next === null ? msg : { ...msg, next: /** @type {Record<string, unknown>} */ (next) };
  }
  if (kind === "event") {
    only(obj, ["type", "sub", "cursor", "event"]);
    if (!isMap(obj.event)) throw wireError("bad-field", "event must be a map");
    return {
      kind: "event",
      sub: id(obj, "sub"),
      cursor: id(obj, "cursor"),
      event: /** @type {Record<string, unknown>} */ (obj.event),
    };
  }
  if (kind === "close") {
    only(obj, ["type", "error"]);
    return { kind: "close", error: errorInfo(obj.error) };
  }
  throw wireError("bad-type-tag", `unknown frame type ${JSON.stringify(kind.slice(0, 32))}`);
}
