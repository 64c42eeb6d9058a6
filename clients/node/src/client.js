/**
 * The Node.js client of a p2pchat node's local RPC API (protocol-spec/rpc.md).
 *
 *     const client = await Client.connect({ home: "/path/to/home" });
 *     const info = await client.call("node.info");
 *     const sub = await client.subscribe({ types: ["dm.received"] });
 *     for await (const item of sub) { ... }   // {kind: "event", ...} or {kind: "gap", ...}
 *     await client.close();
 *
 * While the client is open and has subscriptions, it keeps a connection: when the node
 * restarts or drops it (slow consumer), it reconnects (backoff 50 ms, doubling, capped
 * at 2 s) and re-subscribes each subscription after the last cursor it delivered, so no
 * event is lost or repeated; if the node's log no longer reaches back that far, the
 * iterator yields a `gap` item first. Calls are never retried (they need not be
 * idempotent): a call in flight when the connection drops rejects with network-error;
 * a later call waits up to `reconnectTimeoutMs` for the next connection. A revoked token
 * or a version mismatch ends everything with that error instead of retrying forever.
 */

import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { inspect } from "node:util";

import { Codes, P2PChatError, networkError, wireError } from "./errors.js";
import { MAX_FRAME } from "./framing.js";
import { openConnection } from "./connection.js";

const SOCKET_FILE = "rpc.sock";
const TOKEN_FILE = "rpc.token";
const TOKEN_PREFIX = "p2pc_";
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2000;
/** Items a subscription buffers before the connection stops reading (backpressure). */
const QUEUE_HIGH = 1024;

/**
 * The admin token of a node home (`<home>/rpc.token`), as the CLI reads it.
 * @param {string} home
 * @returns {string}
 */
export function readToken(home) {
  let text;
  try {
    text = readFileSync(path.join(home, TOKEN_FILE), "ascii").trim();
  } catch (err) {
    const code = /** @type {NodeJS.ErrnoException} */ (err).code;
    throw new P2PChatError(`no RPC token in ${home} (${code}): is this a node home?`, {
      code: Codes.INVALID_ARGUMENT,
    });
  }
  if (!text.startsWith(TOKEN_PREFIX)) {
    throw new P2PChatError("the RPC token file is corrupt", { code: Codes.STORAGE_ERROR });
  }
  return text;
}

/**
 * TCP only to loopback literals, as the node only listens there: the token travels in
 * clear, so a typo in a host name must not send it across the network.
 * @param {string} host
 */
function checkLoopback(host) {
  const loopback =
    (net.isIPv4(host) && host.startsWith("127.")) || (net.isIPv6(host) && host === "::1");
  if (!loopback) {
    throw new P2PChatError(`RPC over TCP is loopback only (127.0.0.0/8 or ::1), not ${host}`, {
      code: Codes.INVALID_ARGUMENT,
    });
  }
}


/**
 * @typedef {{kind: "event", cursor: number, type: string, data: Record<string, unknown>}} EventItem
 * @typedef {{kind: "gap", afterCursor: number | null, oldestCursor: number}} GapItem
 */

/**
 * An async iterator of {@link EventItem} and {@link GapItem}; `close()` (or leaving a
 * `for await` loop) unsubscribes. Persist `{epoch, lastCursor}` to resume in a later
 * process: `client.subscribe({afterCursor: lastCursor, epoch})`.
 */
export class Subscription {
  /**
   * @param {Client} client
   * @param {{types?: string[], afterCursor?: number, epoch?: string}} options
   */
  constructor(client, { types, afterCursor, epoch }) {
    this.client = client;
    /** @type {string[] | undefined} */
    this.types = types === undefined ? undefined : [...new Set(types)].sort();
    /** @type {number | null} the cursor of the last event delivered (or resumed from) */
    this.lastCursor = afterCursor ?? null;
    /** @type {string | null} the node run (epoch) the cursor belongs to */
    this.epoch = epoch ?? null;
    this.resume = afterCursor !== undefined;
    /** @type {number | null} */
    this.serverId = null;
    /** @type {(EventItem | GapItem)[]} */
    this.queue = [];
    /** @type {{resolve: (value: IteratorResult<EventItem | GapItem>) => void, reject: (err: P2PChatError) => void}[]} */
    this.waiters = [];
    /** @type {P2PChatError | null} */
    this.error = null;
    this.ended = false;
    this.closed = false;
    /** True while this subscription's full queue holds the connection's reading. */
    this.pausing = false;
  }

  /** The params of `events.subscribe`, resuming once anything was received. */
  params() {
    /** @type {Record<string, unknown>} */
    const out = {};
    if (this.types !== undefined) out.types = this.types;
    if (this.resume) {
      out.after_cursor = this.lastCursor ?? 0;
      if (this.epoch !== null) out.epoch = this.epoch;
    }
    return out;
  }

  /**
   * Runs when the subscribe reply arrives, before any event of this subscription.
   * @param {unknown} raw
   */
  onSubscribed(raw) {
    const result = /** @type {{sub: number, epoch: string, gap: boolean, last_cursor: number, oldest_cursor: number}} */ (raw);
    const valid =
      typeof result === "object" && result !== null &&
      Number.isSafeInteger(result.sub) && typeof result.epoch === "string" &&
      typeof result.gap === "boolean" && Number.isSafeInteger(result.last_cursor) &&
      Number.isSafeInteger(result.oldest_cursor);
    if (!valid) throw wireError("bad-field", "malformed events.subscribe result");
    this.serverId = result.sub;
    this.client.subsById.set(result.sub, this);
    this.resume = true;
    const restarted = this.epoch !== null && result.epoch !== this.epoch;
    this.epoch = result.epoch;
    if (this.lastCursor === null) {
      this.lastCursor = result.last_cursor;
    } else if (result.gap) {
      this.push({ kind: "gap", afterCursor: this.lastCursor, oldestCursor: result.oldest_cursor });
      if (restarted) this.lastCursor = 0; // the new run counts from 1 again
    }
  }

  /** @param {import("./codec.js").EventMessage} msg */
  deliver(msg) {
    if (this.lastCursor !== null && msg.cursor <= this.lastCursor) return; // seen before a reconnect
    this.lastCursor = msg.cursor;
    const type = typeof msg.event.type === "string" ? msg.event.type : "";
    this.push({ kind: "event", cursor: msg.cursor, type, data: msg.event });
  }

  /** @param {EventItem | GapItem} item */
  push(item) {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.resolve({ value: item, done: false });
      return;
    }
    this.queue.push(item);
    if (!this.pausing && this.queue.length >= QUEUE_HIGH) {
      this.pausing = true;
      this.client.pauseReading();
    }
  }

  /**
   * End the iteration after the queued items; with `error`, throw it then.
   * @param {P2PChatError | null} error
   */
  end(error) {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    for (const waiter of this.waiters.splice(0)) {
      if (error) waiter.reject(error);
      else waiter.resolve({ value: undefined, done: true });
    }
  }

  /** @returns {Promise<IteratorResult<EventItem | GapItem>>} */
  next() {
    const item = this.queue.shift();
    if (item !== undefined) {
      if (this.pausing && this.queue.length <= QUEUE_HIGH / 2) {
        this.pausing = false;
        this.client.resumeReading();
      }
      return Promise.resolve({ value: item, done: false });
    }
    if (this.ended) {
      if (this.error && !this.closed) return Promise.reject(this.error);
      return Promise.resolve({ value: undefined, done: true });
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Unsubscribe; pending `next()` calls finish with `done`. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    this.end(null);
    this.queue = [];
    if (this.pausing) {
      this.pausing = false;
      this.client.resumeReading();
    }
    await this.client.unsubscribe(this);
  }

  /** @returns {Promise<IteratorResult<EventItem | GapItem>>} */
  async return() {
    await this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator]() {
    return this;
  }
}

/**
 * A connection to a node's RPC API that survives node restarts (see the module doc).
 * A client is used once: after `close()` every call rejects with code 1009 (closed).
 */
export class Client {
  /** @type {string} never shown by inspect, JSON or errors */
  #token;

  /**
   * Use {@link Client.connect}.
   * @param {{where: {path?: string, host?: string, port?: number}, token: string,
   *          clientName: string, timeoutMs: number, callTimeoutMs: number,
   *          reconnectTimeoutMs: number, maxFrame: number}} options
   */
  constructor({ where, token, clientName, timeoutMs, callTimeoutMs, reconnectTimeoutMs, maxFrame }) {
    this.where = where;
    this.#token = token;
    this.clientName = clientName;
    this.timeoutMs = timeoutMs;
    this.callTimeoutMs = callTimeoutMs;
    this.reconnectTimeoutMs = reconnectTimeoutMs;
    this.maxFrame = maxFrame;
    /** @type {import("./connection.js").Connection | null} */
    this.conn = null;
    /** @type {Promise<import("./connection.js").Connection> | null} */
    this.connecting = null;
    /** @type {Set<Subscription>} */
    this.subs = new Set();
    /** @type {Map<number, Subscription>} */
    this.subsById = new Map();
    /** @type {P2PChatError | null} */
    this.fatal = null;
    this.closed = false;
    this.paused = 0;
    /** @type {import("./connection.js").ServerInfo | null} what the last hello said */
    this.info = null;
  }

  /**
   * Connect and authenticate.
   *
   * @param {object} options
   * @param {string} [options.home] the node home: socket `<home>/rpc.sock`, token `<home>/rpc.token`
   * @param {string} [options.socketPath] a unix socket path (default: in `home`)
   * @param {string} [options.host] a loopback IP literal, for TCP
   * @param {number} [options.port] the node's RPC TCP port (`rpc_tcp_port`)
   * @param {string} [options.token] default: read from `home`
   * @param {string} [options.clientName] shown in the node's logs
   * @param {number} [options.timeoutMs] connect and hello (default 10 s)
   * @param {number} [options.callTimeoutMs] each call (default 30 s)
   * @param {number} [options.reconnectTimeoutMs] how long a call waits for a reconnect (default 5 s)
   * @param {number} [options.maxFrame] largest frame accepted (default 1 MiB)
   * @returns {Promise<Client>}
   */
  static async connect({
    home,
    socketPath,
    host,
    port,
    token,
    clientName = "p2pchat-node-client",
    timeoutMs = 10_000,
    callTimeoutMs = 30_000,
    reconnectTimeoutMs = 5_000,
    maxFrame = MAX_FRAME,
  } = {}) {
    /** @type {{path?: string, host?: string, port?: number}} */
    let where;
    if (port !== undefined) {
      const tcpHost = host ?? "127.0.0.1";
      checkLoopback(tcpHost);
      where = { host: tcpHost, port };
    } else if (socketPath !== undefined || home !== undefined) {
      where = { path: socketPath ?? path.join(/** @type {string} */ (home), SOCKET_FILE) };
    } else {
      throw new P2PChatError("pass home, socketPath, or port (TCP)", { code: Codes.INVALID_ARGUMENT });
    }
    if (token === undefined) {
      if (home === undefined) {
        throw new P2PChatError("pass token when connecting without home", { code: Codes.INVALID_ARGUMENT });
      }
      token = readToken(home);
    }
    const client = new Client({
      where, token, clientName, timeoutMs, callTimeoutMs, reconnectTimeoutMs, maxFrame,
    });
    client.conn = await client.#open();
    return client;
  }

  #open() {
    return openConnection({
      where: this.where,
      token: this.#token,
      clientName: this.clientName,
      timeoutMs: this.timeoutMs,
      maxFrame: this.maxFrame,
      onEvent: (msg) => this.subsById.get(msg.sub)?.deliver(msg),
      onLost: (conn) => this.#onLost(conn),
    }).then((conn) => {
      this.info = conn.info;
      return conn;
    });
  }

  /** @type {(() => void) | null} ends the current backoff sleep early (on close) */
  #wake = null;

  /** @param {number} ms */
  #sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve(undefined);
      };
    }).finally(() => {
      this.#wake = null;
    });
  }

  /** @param {import("./connection.js").Connection} conn */
  #onLost(conn) {
    if (conn !== this.conn) return;
    this.conn = null;
    this.subsById.clear();
    this.paused = 0; // the next connection starts reading; queues drain as they are read
    for (const sub of this.subs) sub.pausing = false;
    if (!this.closed && this.subs.size > 0) {
      this.#reconnect().catch(() => {}); // failures reach subscriptions and callers
    }
  }

  /** One reconnect loop at a time; resolves with the new connection, subscriptions re-made. */
  #reconnect() {
    this.connecting ??= this.#reconnectLoop().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  async #reconnectLoop() {
    let backoff = BACKOFF_MIN_MS;
    for (;;) {
      if (this.closed) throw new P2PChatError("the client is closed", { code: Codes.CLOSED });
      let conn;
      try {
        conn = await this.#open();
      } catch (err) {
        const code = err instanceof P2PChatError ? err.code : null;
        if (code === Codes.UNAUTHENTICATED || code === Codes.VERSION_MISMATCH) {
          this.#fail(/** @type {P2PChatError} */ (err)); // retrying cannot help
          throw err;
        }
        await this.#sleep(backoff);
        backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
        continue;
      }
      if (this.closed) {
        conn.close();
        continue;
      }
      this.conn = conn;
      try {
        await this.#resubscribe(conn);
      } catch {
        continue; // lost again while re-subscribing: #onLost cleared this.conn
      }
      return conn;
    }
  }

  /** @param {import("./connection.js").Connection} conn */
  async #resubscribe(conn) {
    for (const sub of [...this.subs]) {
      try {
        await conn.request("events.subscribe", sub.params(), {
          timeoutMs: this.callTimeoutMs,
          onResult: (result) => sub.onSubscribed(result),
        });
      } catch (err) {
        if (conn.lost) throw err;
        this.subs.delete(sub); // e.g. the token lost the read scope
        sub.end(/** @type {P2PChatError} */ (err));
      }
    }
  }

  /** @param {P2PChatError} error */
  #fail(error) {
    this.fatal = error;
    for (const sub of this.subs) sub.end(error);
    this.subs.clear();
  }

  /** The live connection, waiting up to `reconnectTimeoutMs` while reconnecting. */
  async #ready() {
    if (this.closed) throw new P2PChatError("the client is closed", { code: Codes.CLOSED });
    if (this.fatal) throw this.fatal;
    if (this.conn && !this.conn.lost) return this.conn;
    /** @type {NodeJS.Timeout | undefined} */
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(networkError("the node is not reachable over RPC", "unreachable")),
        this.reconnectTimeoutMs,
      );
    });
    try {
      return /** @type {import("./connection.js").Connection} */ (
        await Promise.race([this.#reconnect(), timeout])
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Call a method; rejects with a {@link P2PChatError} carrying the node's error code.
   * @param {string} method e.g. "node.info", "dm.send"
   * @param {Record<string, unknown>} [params]
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<any>}
   */
  async call(method, params = {}, { timeoutMs = this.callTimeoutMs } = {}) {
    const conn = await this.#ready();
    return conn.request(method, params, { timeoutMs });
  }

  /**
   * Like {@link call}, resolving with `{result, next}`: `next` is null when the result is
   * whole; when the node cut a list to fit one frame (rpc.md, "Results larger than a
   * frame") call again with `{...params, ...next}` for the rest.
   * @param {string} method
   * @param {Record<string, unknown>} [params]
   * @param {{timeoutMs?: number}} [options]
   * @returns {Promise<{result: any, next: Record<string, unknown> | null}>}
   */
  async callPage(method, params = {}, { timeoutMs = this.callTimeoutMs } = {}) {
    const conn = await this.#ready();
    return /** @type {Promise<{result: any, next: Record<string, unknown> | null}>} */ (
      conn.request(method, params, { timeoutMs, page: true })
    );
  }

  /**
   * Subscribe to node events (all types if `types` is not given), optionally resuming
   * after a cursor of the run named `epoch` (rpc.md §7). Resolves once the node
   * confirmed: every event published after that is delivered.
   * @param {{types?: string[], afterCursor?: number, epoch?: string}} [options]
   * @returns {Promise<Subscription>}
   */
  async subscribe({ types, afterCursor, epoch } = {}) {
    const sub = new Subscription(this, { types, afterCursor, epoch });
    const conn = await this.#ready();
    this.subs.add(sub);
    try {
      await conn.request("events.subscribe", sub.params(), {
        timeoutMs: this.callTimeoutMs,
        onResult: (result) => sub.onSubscribed(result),
      });
    } catch (err) {
      this.subs.delete(sub);
      throw err;
    }
    return sub;
  }

  /**
   * Send a direct message with files of the node's machine attached (`files.add` for
   * each, then `dm.send`; needs the admin scope to add files). Resolves with the message.
   * `onProgress` receives the `file.progress` events of sealing those files (`up`).
   * @param {string} to contact name or account key
   * @param {string} text may be empty when files are given
   * @param {{files?: string[], onProgress?: (p: any) => void}} [options] absolute paths on the node's machine
   */
  async sendDm(to, text, { files = [], onProgress } = {}) {
    const ids = await this.#addFiles(files, onProgress);
    return this.call("dm.send", ids.length ? { to, text, files: ids } : { to, text });
  }

  /**
   * Send several text messages to one contact, in order, as one batch (`dm.send_batch`:
   * one transaction and one fsync on the node, all or none queued). Resolves with the
   * messages, in order. At most 256 texts.
   * @param {string} to contact name or account key
   * @param {string[]} texts
   * @param {{replyTo?: string}} [options] hex id of the message each of them answers
   */
  async sendDms(to, texts, { replyTo } = {}) {
    return this.call("dm.send_batch", replyTo ? { to, texts, reply_to: replyTo } : { to, texts });
  }

  /**
   * Post in a group, with files attached (as {@link sendDm}).
   * @param {string} group
   * @param {string} text
   * @param {{files?: string[], onProgress?: (p: any) => void}} [options]
   */
  async post(group, text, { files = [], onProgress } = {}) {
    const ids = await this.#addFiles(files, onProgress);
    return this.call("groups.post", ids.length ? { group, text, files: ids } : { group, text });
  }

  /**
   * A share card, optionally with a product photo (`image`: a path on the node's machine).
   * @param {string} group
   * @param {{title: string, url: string, price?: number, currency?: string, note?: string, image?: string}} card
   * @param {{onProgress?: (p: any) => void}} [options]
   */
  async share(group, { image, ...card }, { onProgress } = {}) {
    /** @type {Record<string, unknown>} */
    const params = { group, ...card };
    if (image !== undefined) params.image = (await this.#addFiles([image], onProgress))[0];
    return this.call("groups.share", params);
  }

  /**
   * Seal a file of the node's machine into its blob store (`files.add`, admin scope);
   * resolves with its FILE_INFO (`file_id`, ...), to attach by id later.
   * @param {string} file a path on the node's machine
   * @param {{mime?: string, onProgress?: (p: any) => void}} [options]
   */
  async addFile(file, { mime, onProgress } = {}) {
    const name = path.basename(file);
    const params = mime === undefined ? { path: file } : { path: file, mime };
    return this.#withProgress(
      (p) => p.direction === "up" && p.name === name,
      onProgress,
      () => this.call("files.add", params, { timeoutMs: 3_600_000 }),
    );
  }

  /** Files the node holds or can fetch, newest first (`files.list`). */
  async listFiles() {
    return this.call("files.list");
  }

  /** @param {string} fileId hex id, or a prefix of at least 8 digits */
  async fileInfo(fileId) {
    return this.call("files.info", { file: fileId });
  }

  /**
   * Download a file from its holders (several at once) into the node's blob store,
   * without writing it out (`files.fetch`); `onProgress` as for {@link getFile}.
   * @param {string} fileId
   * @param {{onProgress?: (p: any) => void, timeoutMs?: number}} [options]
   */
  async fetchFile(fileId, { onProgress, timeoutMs = 3_600_000 } = {}) {
    return this.#withProgress(
      (/** @type {any} */ p) => String(p.blob_id).startsWith(fileId),
      onProgress,
      () => this.call("files.fetch", { file: fileId }, { timeoutMs }),
    );
  }

  /**
   * Fetch a file from its holders and save it at `out` (a path on the node's machine; a
   * directory gets the file's own name). `onProgress` receives each `file.progress`
   * event of this file (`{done, total, state, sources}`).
   * @param {string} fileId hex id, or a prefix of at least 8 digits
   * @param {string} out
   * @param {{overwrite?: boolean, onProgress?: (p: any) => void, timeoutMs?: number}} [options]
   */
  async getFile(fileId, out, { overwrite = false, onProgress, timeoutMs = 3_600_000 } = {}) {
    return this.#withProgress(
      (/** @type {any} */ p) => String(p.blob_id).startsWith(fileId),
      onProgress,
      () => this.call("files.get", { file: fileId, out, overwrite }, { timeoutMs }),
    );
  }

  /**
   * The hash that names a media file in live groups (`files.media_hash`): of a file on
   * the node's machine, of an http(s) URL's text, or a 64-hex hash as given.
   * @param {string} media
   */
  async mediaHash(media) {
    return this.call("files.media_hash", { media });
  }

  /**
   * A watch-together comment in a live group at `offsetMs` of `media` (a file on the
   * node's machine, named by its hash; an http(s) URL; or a media hash), as
   * `p2pchat groups live-post GROUP --media FILE --at POSITION TEXT`.
   * @param {string} group
   * @param {string} text
   * @param {{media: string, offsetMs: number}} where
   */
  async livePost(group, text, { media, offsetMs }) {
    const found = await this.mediaHash(media);
    /** @type {Record<string, unknown>} */
    const params = {
      group, media_hash: found.media_hash, mime: found.mime, size: found.size,
      offset_ms: offsetMs, text,
    };
    if (found.url != null) params.url = found.url;
    return this.call("groups.live", params);
  }

  // -- devices of our account (rpc.md "Devices"; admin scope to change anything) ----------

  /** Our devices: this one first, the others by age, then revoked ones (`devices.list`). */
  async listDevices() {
    return this.call("devices.list");
  }

  /**
   * A one-time link code for a new device (`devices.link`); the new device's
   * `device.link_request` event carries the confirmation code to compare, then
   * {@link confirmLink} answers it.
   * @param {{ttlMs?: number}} [options] how long the code is valid (10 s to 5 min)
   */
  async linkDevice({ ttlMs } = {}) {
    return this.call("devices.link", ttlMs === undefined ? {} : { ttl_ms: ttlMs });
  }

  /**
   * Link (`accept`: the confirmation codes match) or refuse the device waiting to link.
   * @param {boolean} accept
   */
  async confirmLink(accept) {
    return this.call("devices.confirm", { accept });
  }

  /**
   * Name one of our devices (kept on this device only).
   * @param {string} device key (64 hex), a unique prefix of 4+ hex digits, or its name
   * @param {string} name
   */
  async renameDevice(device, name) {
    return this.call("devices.rename", { device, name });
  }

  /**
   * Revoke another device of ours (`devices.revoke`): it gets nothing new.
   * @param {string} device as for {@link renameDevice}
   */
  async revokeDevice(device) {
    return this.call("devices.revoke", { device });
  }

  /**
   * Copy our direct-message history from another device of ours (`devices.history_sync`):
   * resolves when the copy is complete, after that device's user agreed (up to 2 minutes)
   * and the chunks came. `onProgress` receives the `device.history_progress` events
   * (`{device, received, total, done, error}`). Asked again after an interruption it
   * continues where it stopped.
   * @param {string} device as for {@link renameDevice}, not this one
   * @param {{since?: number, max?: number, onProgress?: (p: any) => void, timeoutMs?: number}} [options]
   *   since: only messages sent at or after (ms; 0: all); max: messages at most
   */
  async syncHistory(device, { since, max, onProgress, timeoutMs = 3_600_000 } = {}) {
    /** @type {Record<string, unknown>} */
    const params = { device };
    if (since !== undefined) params.since = since;
    if (max !== undefined) params.max = max;
    // Named by key or prefix: only that device's events (by name: every copy's events).
    const hex = /^[0-9a-f]{4,64}$/i.test(device) ? device.toLowerCase() : null;
    return this.#withProgress(
      (/** @type {any} */ p) => hex === null || String(p.device).startsWith(hex),
      onProgress,
      () => this.call("devices.history_sync", params, { timeoutMs }),
      "device.history_progress",
    );
  }

  /** The history request waiting for this device's consent, or `null` (`devices.history_pending`). */
  async pendingHistory() {
    return this.call("devices.history_pending");
  }

  /**
   * Send (`accept`) or refuse the history a device of ours asked for (`devices.history_confirm`).
   * @param {boolean} accept
   */
  async confirmHistory(accept) {
    return this.call("devices.history_confirm", { accept });
  }

  /**
   * Run `action` while passing the events of `type` (`file.progress` by default) that
   * `wanted` accepts to `onProgress` (no subscription without `onProgress`).
   * @template T
   * @param {(p: any) => boolean} wanted
   * @param {((p: any) => void) | undefined} onProgress
   * @param {() => Promise<T>} action
   * @param {string} [type]
   * @returns {Promise<T>}
   */
  async #withProgress(wanted, onProgress, action, type = "file.progress") {
    const sub = onProgress ? await this.subscribe({ types: [type] }) : null;
    const pump = sub
      ? (async () => {
          for await (const item of sub) {
            if (item.kind === "event" && wanted(item.data)) onProgress?.(item.data);
          }
        })()
      : null;
    try {
      return await action();
    } finally {
      if (sub) {
        await this.unsubscribe(sub);
        sub.end(null);
        await pump;
      }
    }
  }

  /**
   * @param {string[]} paths
   * @param {((p: any) => void) | undefined} onProgress
   */
  async #addFiles(paths, onProgress) {
    const ids = [];
    for (const file of paths) ids.push((await this.addFile(file, { onProgress })).file_id);
    return ids;
  }

  /** @param {Subscription} sub */
  async unsubscribe(sub) {
    this.subs.delete(sub);
    const id = sub.serverId;
    sub.serverId = null;
    if (id === null) return;
    this.subsById.delete(id);
    const conn = this.conn;
    if (conn && !conn.lost && !this.closed) {
      try {
        await conn.request("events.unsubscribe", { sub: id }, { timeoutMs: this.callTimeoutMs });
      } catch {
        // the connection went away, and the subscription with it
      }
    }
  }

  pauseReading() {
    if (this.paused++ === 0) this.conn?.pause();
  }

  resumeReading() {
    if (this.paused > 0 && --this.paused === 0) this.conn?.resume();
  }

  /** Close the connection and end every subscription. Idempotent. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    for (const sub of this.subs) sub.end(null);
    this.subs.clear();
    this.conn?.close();
    this.conn = null;
    this.#wake?.(); // a reconnect loop waiting out its backoff stops now, not in 2 s
  }

  [inspect.custom]() {
    const at = this.where.path ?? `${this.where.host}:${this.where.port}`;
    return `Client(${at}, ${this.closed ? "closed" : "open"})`;
  }

  toJSON() {
    return { where: this.where, closed: this.closed };
  }
}
