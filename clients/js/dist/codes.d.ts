/** A close code the server sends: its reason, and whether a client should reconnect. */
export interface CloseCode {
    code: number;
    reason: string;
    reconnect: boolean;
}
/** Every close code the server sends, in code order. */
export declare const CLOSE_CODES: readonly CloseCode[];
/**
 * Whether a client should reconnect after a close with `code`: per the table when the code
 * is in it; otherwise 4000–4499 reconnect, 4500–4999 do not, and 1006 (the connection was
 * lost without a close frame) and 1011 reconnect. Other codes do not.
 */
export declare function shouldReconnect(code: number): boolean;
/** Error codes of command replies (`error.code`), by name. */
export declare const ErrorCodes: {
    readonly INTERNAL: 100;
    readonly UNKNOWN_COMMAND: 101;
    readonly BAD_REQUEST: 102;
    readonly PERMISSION_DENIED: 103;
    readonly INVALID_CHANNEL: 104;
    readonly NOT_CONNECTED: 105;
    readonly ALREADY_CONNECTED: 106;
    readonly ALREADY_SUBSCRIBED: 107;
    readonly NOT_SUBSCRIBED: 108;
    readonly LIMIT_EXCEEDED: 109;
    readonly UNAVAILABLE: 110;
    readonly BACKEND_ERROR: 111;
    readonly TIMEOUT: 112;
    readonly NO_HISTORY: 113;
    readonly NO_PRESENCE: 114;
};
/**
 * Codes of errors the client makes itself, never sent by a server (server codes are 100 and
 * up): a command that got no reply in time, one cut short by a lost connection, and one
 * made on (or cut short by) a closed client.
 */
export declare const ClientErrorCodes: {
    readonly TIMEOUT: 1;
    readonly DISCONNECTED: 2;
    readonly CLOSED: 3;
};
