// The close and error code tables of docs/protocol.md (crates/switchboard-wire/src/codes.rs
// is their source of truth; test/sdk.test.mjs checks this copy against docs/protocol.md).
/** Every close code the server sends, in code order. */
export const CLOSE_CODES = [
    { code: 1000, reason: "normal", reconnect: false },
    { code: 1001, reason: "going away", reconnect: true },
    { code: 1002, reason: "protocol error", reconnect: false },
    { code: 1003, reason: "unsupported data", reconnect: false },
    { code: 1007, reason: "invalid payload", reconnect: false },
    { code: 1009, reason: "message too big", reconnect: false },
    { code: 4000, reason: "internal error", reconnect: true },
    { code: 4001, reason: "shutdown", reconnect: true },
    { code: 4002, reason: "slow consumer", reconnect: true },
    { code: 4003, reason: "connect timeout", reconnect: true },
    { code: 4004, reason: "no pong", reconnect: true },
    { code: 4005, reason: "disconnected", reconnect: true },
    { code: 4006, reason: "token expired", reconnect: true },
    { code: 4007, reason: "too many connections", reconnect: true },
    { code: 4008, reason: "rate limited", reconnect: true },
    { code: 4009, reason: "rebalance", reconnect: true },
    { code: 4500, reason: "bad request", reconnect: false },
    { code: 4501, reason: "unauthorized", reconnect: false },
    { code: 4503, reason: "force disconnect", reconnect: false },
];
/**
 * Whether a client should reconnect after a close with `code`: per the table when the code
 * is in it; otherwise 4000–4499 reconnect, 4500–4999 do not, and 1006 (the connection was
 * lost without a close frame) and 1011 reconnect. Other codes do not.
 */
export function shouldReconnect(code) {
    const known = CLOSE_CODES.find((c) => c.code === code);
    if (known)
        return known.reconnect;
    return (code >= 4000 && code < 4500) || code === 1001 || code === 1006 || code === 1011;
}
/** Error codes of command replies (`error.code`), by name. */
export const ErrorCodes = {
    INTERNAL: 100,
    UNKNOWN_COMMAND: 101,
    BAD_REQUEST: 102,
    PERMISSION_DENIED: 103,
    INVALID_CHANNEL: 104,
    NOT_CONNECTED: 105,
    ALREADY_CONNECTED: 106,
    ALREADY_SUBSCRIBED: 107,
    NOT_SUBSCRIBED: 108,
    LIMIT_EXCEEDED: 109,
    UNAVAILABLE: 110,
    BACKEND_ERROR: 111,
    TIMEOUT: 112,
    NO_HISTORY: 113,
    NO_PRESENCE: 114,
};
/**
 * Codes of errors the client makes itself, never sent by a server (server codes are 100 and
 * up): a command that got no reply in time, one cut short by a lost connection, and one
 * made on (or cut short by) a closed client.
 */
export const ClientErrorCodes = {
    TIMEOUT: 1,
    DISCONNECTED: 2,
    CLOSED: 3,
};
