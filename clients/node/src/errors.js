/**
 * Errors of the p2pchat RPC client.
 *
 * Every failure surfaces as one class, {@link P2PChatError}, carrying the stable numeric
 * `code` and slug `name` of the node's error table (protocol-spec/rpc.md §6): program
 * against those, not against `message`, which is for people. Failures that happen on
 * this side of the socket (connection lost, timeout, malformed frame) use the codes the
 * node would use for the same situation, so one `switch (err.code)` covers both.
 */

/**
 * The node's error table: code -> stable name (rpc.md §6). Codes are never renumbered.
 * @type {Readonly<Record<number, string>>}
 */
export const ERROR_NAMES = Object.freeze({
  [-32700]: "parse-error",
  [-32600]: "invalid-request",
  [-32601]: "method-not-found",
  [-32602]: "invalid-params",
  [-32603]: "internal-error",
  1000: "error",
  1001: "not-found",
  1002: "permission-denied",
  1003: "rate-limited",
  1004: "invalid-argument",
  1005: "storage-error",
  1006: "network-error",
  1007: "peer-unreachable",
  1008: "crypto-failure",
  1009: "closed",
  1010: "keystore-error",
  1011: "protocol-error",
  1012: "local-protocol-error",
  1101: "unauthenticated",
  1102: "version-mismatch",
  1103: "slow-consumer",
});

/** Named codes, for `err.code === Codes.NOT_FOUND` rather than magic numbers. */
export const Codes = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  ERROR: 1000,
  NOT_FOUND: 1001,
  PERMISSION_DENIED: 1002,
  RATE_LIMITED: 1003,
  INVALID_ARGUMENT: 1004,
  STORAGE_ERROR: 1005,
  NETWORK_ERROR: 1006,
  PEER_UNREACHABLE: 1007,
  CRYPTO_FAILURE: 1008,
  CLOSED: 1009,
  KEYSTORE_ERROR: 1010,
  PROTOCOL_ERROR: 1011,
  LOCAL_PROTOCOL_ERROR: 1012,
  UNAUTHENTICATED: 1101,
  VERSION_MISMATCH: 1102,
  SLOW_CONSUMER: 1103,
});

/**
 * An error from the node, or from talking to it.
 *
 * `name` is the stable slug of `code` ("not-found", "network-error"…); an unknown code
 * from a newer node keeps its number and gets the generic name "error" (rpc.md §6).
 */
export class P2PChatError extends Error {
  /**
   * @param {string} message for people and logs; never contains secrets
   * @param {{code?: number, data?: unknown, cause?: unknown}} [options]
   */
  constructor(message, { code = Codes.ERROR, data = undefined, cause = undefined } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.name = ERROR_NAMES[code] ?? "error";
    /** @type {unknown} */
    this.data = data;
  }

  /**
   * The error a reply's `{code, name, message, data}` map stands for.
   * @param {{code: number, name: string, message: string, data?: unknown}} error
   */
  static fromWire(error) {
    return new P2PChatError(error.message, { code: error.code, data: error.data });
  }
}

/**
 * A frame or payload that breaks the wire format (rpc.md §2), with a stable `reason` slug.
 * @param {string} reason
 * @param {string} [detail]
 */
export function wireError(reason, detail = "") {
  const message = detail ? `malformed frame (${reason}): ${detail}` : `malformed frame (${reason})`;
  return new P2PChatError(message, { code: Codes.PARSE_ERROR, data: { reason } });
}

/**
 * A client-side network failure (connection refused or lost, timeout).
 * @param {string} message
 * @param {string} reason a stable slug in `data.reason`: "connect", "lost", "timeout"…
 */
export function networkError(message, reason) {
  return new P2PChatError(message, { code: Codes.NETWORK_ERROR, data: { reason } });
}
