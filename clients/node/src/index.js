/**
 * p2pchat-client: talk to a p2pchat node from Node.js over its local RPC API.
 * See README.md and protocol-spec/rpc.md.
 */

export { Client, Subscription, readToken } from "./client.js";
export { Codes, ERROR_NAMES, P2PChatError } from "./errors.js";
export { DEFAULT_LIMITS, decodePayload, encodeRequest, parseServerMessage } from "./codec.js";
export { FrameDecoder, MAX_FRAME, decodeVarint, encodeFrame, encodeVarint } from "./framing.js";
export { PROTOCOL_VERSIONS } from "./connection.js";
