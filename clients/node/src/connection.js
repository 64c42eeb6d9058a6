/**
 * One authenticated connection to a node: hello, request/response matching, frames.
 *
 * {@link Client} owns at most one of these at a time and replaces it when the node
 * restarts or drops it; this class knows nothing about reconnecting.
 */

import net from "node:net";

import { decodePayload, encodeRequest, parseServerMessage } from "./codec.js";
import { Codes, P2PChatError, networkError } from "./errors.js";
import { FrameDecoder, MAX_FRAME, encodeFrame } from "./framing.js";

/** Protocol versions this client speaks (rpc.md §4). */
export const PROTOCOL_VERSIONS = Object.freeze([1, 1]);
const HELLO_ID = 0;

/**
 * What `rpc.hello` told us.
 * @typedef {{version: number, epoch: string, node: Record<string, unknown>,
 *            scopes: string[], limits: Record<string, unknown>}} ServerInfo
 */

/**
 * @typedef {{resolve: (value: unknown) => void, reject: (err: P2PChatError) => void,
 *            onResult?: (result: unknown) => void, page?: boolean, timer?: NodeJS.Timeout}} Pending
 */

/**
 * @param {unknown} result
 * @returns {ServerInfo}
 */
function serverInfo(result) {
  const r = /** @type {Record<string, unknown>} */ (result);
  const ok =
    typeof r === "object" &&
    r !== null &&
    Number.isSafeInteger(r.version) &&
    typeof r.epoch === "string" &&
    typeof r.node === "object" &&
    Array.isArray(r.scopes) &&
    r.scopes.every((s) => typeof s === "string") &&
    typeof r.limits === "object";
  if (!ok) {
    throw networkError("malformed rpc.hello result", "bad-hello");
  }
  const [min, max] = PROTOCOL_VERSIONS;
  if (/** @type {number} */ (r.version) < min || /** @type {number} */ (r.version) > max) {
    // The node must pick from our range (rpc.md §4); anything else is a broken node.
    throw new P2PChatError(`the node chose protocol version ${r.version}, outside ${min}..${max}`, {
      code: Codes.VERSION_MISMATCH,
    });
  }
  return /** @type {ServerInfo} */ (r);
}

export class Connection {
  /**
   * @param {net.Socket} socket a connected socket
   * @param {{maxFrame: number, onEvent: (msg: import("./codec.js").EventMessage) => void,
   *          onLost: (conn: Connection, reason: P2PChatError) => void}} options
   */
  constructor(socket, { maxFrame, onEvent, onLost }) {
    this.socket = socket;
    this.maxFrame = maxFrame;
    this.decoder = new FrameDecoder({ maxFrame });
    this.nextId = HELLO_ID + 1;
    /** @type {Map<number, Pending>} */
    this.pending = new Map();
    /** @type {P2PChatError | null} */
    this.lost = null;
    /** @type {ServerInfo | null} */
    this.info = null;
    this.onEvent = onEvent;
    this.onLost = onLost;
    /** @type {P2PChatError} why the connection ends, if the server said (a close frame) */
    this.closeReason = networkError("the node closed the RPC connection", "lost");
    socket.on("data", (chunk) => this.#receive(chunk));
    socket.on("error", () => {}); // "close" follows and reports the loss
    socket.on("close", () => this.#lose(this.closeReason));
  }

  /** @param {Buffer} chunk */
  #receive(chunk) {
    if (this.lost) return;
    try {
      this.decoder.feed(chunk);
      for (let payload = this.decoder.nextFrame(); payload; payload = this.decoder.nextFrame()) {
        this.#dispatch(parseServerMessage(decodePayload(payload)));
        if (this.lost) return;
      }
    } catch (err) {
      // A frame that breaks the wire format, or a result a subscription cannot read.
      const slug = err instanceof P2PChatError && err.code === Codes.PARSE_ERROR
        ? /** @type {{reason: string}} */ (err.data).reason
        : "bad-result";
      this.#lose(networkError(`the node sent a malformed frame (${slug})`, "malformed"));
    }
  }

  /** @param {import("./codec.js").ServerMessage} msg */
  #dispatch(msg) {
    if (msg.kind === "event") {
      this.onEvent(msg);
      return;
    }
    if (msg.kind === "close") {
      this.closeReason = P2PChatError.fromWire(msg.error);
      this.#lose(this.closeReason);
      return;
    }
    const pending = msg.id === null ? undefined : this.pending.get(msg.id);
    if (pending === undefined || msg.id === null) return; // a reply to nothing we wait for
    this.pending.delete(msg.id);
    clearTimeout(pending.timer);
    if (msg.kind === "error") {
      pending.reject(P2PChatError.fromWire(msg.error));
      return;
    }
    // Runs synchronously, before any later frame of this chunk: a subscription learns
    // its id before its first event is dispatched.
    try {
      pending.onResult?.(msg.result);
    } catch (err) {
      pending.reject(networkError(`the node sent a malformed result to request ${msg.id}`, "malformed"));
      throw err; // a node that breaks the protocol loses the connection
    }
    pending.resolve(pending.page ? { result: msg.result, next: msg.next ?? null } : msg.result);
  }

  /** @param {P2PChatError} reason */
  #lose(reason) {
    if (this.lost) return;
    this.lost = reason;
    this.socket.destroy();
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(reason);
    }
    this.pending.clear();
    this.onLost(this, reason);
  }

  /**
   * Send a request and wait for its reply.
   * @param {string} method
   * @param {Record<string, unknown>} params
   * @param {{timeoutMs: number, onResult?: (result: unknown) => void, id?: number, page?: boolean}} options
   *   `page`: resolve with `{result, next}` (`next`: params for the rest of a cut result, or null)
   * @returns {Promise<unknown>}
   */
  request(method, params, { timeoutMs, onResult, id, page = false }) {
    if (this.lost) return Promise.reject(this.lost);
    const requestId = id ?? this.nextId++;
    const frame = encodeFrame(encodeRequest(requestId, method, params), { maxFrame: this.maxFrame });
    return new Promise((resolve, reject) => {
      /** @type {Pending} */
      const pending = { resolve, reject, onResult, page };
      pending.timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(networkError(`${method} timed out after ${timeoutMs} ms`, "timeout"));
      }, timeoutMs);
      this.pending.set(requestId, pending);
      this.socket.write(frame);
    });
  }

  /**
   * Authenticate and negotiate the version (rpc.md §4).
   * @param {string} token
   * @param {string} clientName
   * @param {number} timeoutMs
   */
  async hello(token, clientName, timeoutMs) {
    const params = { versions: [...PROTOCOL_VERSIONS], token, client: clientName };
    this.info = serverInfo(await this.request("rpc.hello", params, { timeoutMs, id: HELLO_ID }));
    return this.info;
  }

  /** Stop reading (backpressure from a full subscription queue). */
  pause() {
    this.socket.pause();
  }

  resume() {
    this.socket.resume();
  }

  close() {
    this.#lose(new P2PChatError("the client is closed", { code: Codes.CLOSED }));
  }
}

/**
 * Connect a socket, bounded in time.
 * @param {{path?: string, host?: string, port?: number}} where
 * @param {number} timeoutMs
 * @returns {Promise<net.Socket>}
 */
function connectSocket(where, timeoutMs) {
  const label = where.path ?? `${where.host}:${where.port}`;
  return new Promise((resolve, reject) => {
    const socket = where.path
      ? net.createConnection({ path: where.path })
      : net.createConnection({ host: where.host, port: /** @type {number} */ (where.port) });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(networkError(`connecting to the node at ${label} timed out`, "timeout"));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (/** @type {NodeJS.ErrnoException} */ err) => {
      clearTimeout(timer);
      reject(networkError(`cannot connect to the node at ${label}: ${err.code ?? err.message}`, "connect"));
    });
  });
}

/**
 * Connect and authenticate; rejects with the server's error (e.g. 1101 unauthenticated).
 * @param {{where: {path?: string, host?: string, port?: number}, token: string,
 *          clientName: string, timeoutMs: number, maxFrame?: number,
 *          onEvent: (msg: import("./codec.js").EventMessage) => void,
 *          onLost: (conn: Connection, reason: P2PChatError) => void}} options
 */
export async function openConnection({ where, token, clientName, timeoutMs, maxFrame = MAX_FRAME, onEvent, onLost }) {
  const socket = await connectSocket(where, timeoutMs);
  let ready = false;
  const conn = new Connection(socket, {
    maxFrame,
    onEvent,
    onLost: (c, reason) => {
      if (ready) onLost(c, reason);
    },
  });
  try {
    await conn.hello(token, clientName, timeoutMs);
  } catch (err) {
    conn.close();
    throw err;
  }
  ready = true;
  return conn;
}
