export { CLOSE_CODES, ClientErrorCodes, ErrorCodes, shouldReconnect } from "./codes.js";
export type { CloseCode } from "./codes.js";
/** The subprotocol of the JSON encoding. */
export declare const SUBPROTOCOL = "switchboard.v1.json";
/** What the client needs of a WebSocket: the browser's `WebSocket`, or Node's `ws`. */
export interface WebSocketLike {
    readonly readyState: number;
    readonly protocol: string;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
}
/** A WebSocket constructor: the browser's `WebSocket`, or the `ws` package's export; its
 * instances are used as `WebSocketLike`. (Typed loosely so that both type-check as they are.) */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => any;
/** A position in a channel's history. */
export interface Position {
    offset: number;
    epoch: string;
}
/** A publication on a channel. In live-only namespaces `offset` and `epoch` are absent. */
export interface Publication {
    channel: string;
    offset?: number;
    epoch?: string;
    /** The publication's JSON value; absent when the bytes are not JSON (then `b64data`). */
    data?: unknown;
    /** The bytes in base64, when they are not one JSON value. */
    b64data?: string;
}
/** A session subscribed to a channel (presence, join and leave). */
export interface ClientInfo {
    session: string;
    user: string;
    /** The token's `info` claim; absent when the token had none. */
    info?: unknown;
}
export interface ConnectedEvent {
    session: string;
    user: string;
    /** The token's expiry in Unix seconds; absent for anonymous sessions. */
    expiresAt?: number;
    /** The server's WebSocket ping interval, seconds. */
    pingInterval: number;
}
export interface DisconnectedEvent {
    /** The close code (`1006` when the link was lost, or given up by the client). */
    code: number;
    reason: string;
    /** Whether the client will try again. */
    reconnect: boolean;
    /** When it will, the delay before the next attempt, ms. */
    delay?: number;
}
export interface SubscribedEvent {
    /** True when this subscription resumed from a position (`recover` was sent). */
    resumed: boolean;
    /** With `resumed`: whether everything after the position follows. False means
     * something was missed: reload the channel's state (`history()` or your backend). */
    recovered: boolean;
    /** Whether the channel's namespace keeps history. */
    history: boolean;
    /** The channel's position when the subscription started (with history). */
    position?: Position;
}
export interface HistoryOptions {
    since?: Position;
    /** 1 to 1000; the server's default is 100. */
    limit?: number;
    reverse?: boolean;
}
export interface HistoryResult {
    publications: Publication[];
    offset?: number;
    epoch?: string;
    continuous: boolean;
}
export interface PresenceStats {
    sessions: number;
    users: number;
}
/** Options of `connect`; README.md lists each with its default. */
export interface ClientOptions {
    token?: string;
    getToken?: () => Promise<string>;
    WebSocket?: WebSocketConstructor;
    name?: string;
    version?: string;
    minReconnectDelay?: number;
    maxReconnectDelay?: number;
    timeout?: number;
    pingInterval?: number;
    pingTimeout?: number;
    refreshBefore?: number;
    random?: () => number;
}
export interface SubscriptionHandlers {
    onPublication?: (pub: Publication) => void;
    onJoin?: (client: ClientInfo) => void;
    onLeave?: (client: ClientInfo) => void;
    onSubscribed?: (ev: SubscribedEvent) => void;
    onUnsubscribed?: (ev: {
        byServer: boolean;
    }) => void;
    onError?: (err: SwitchboardError) => void;
}
/** A command's error: the server's (`code` 100 and up) or the client's own (1 to 3). */
export declare class SwitchboardError extends Error {
    readonly code: number;
    readonly temporary: boolean;
    constructor(code: number, message: string, temporary: boolean);
}
type ClientEvents = {
    connecting: {
        attempt: number;
    };
    connected: ConnectedEvent;
    disconnected: DisconnectedEvent;
    error: Error;
    message: {
        data?: unknown;
        b64data?: string;
    };
    publication: Publication;
    subscribed: {
        channel: string;
        position?: Position;
    };
    unsubscribed: {
        channel: string;
    };
};
export type ClientState = "connecting" | "connected" | "disconnected" | "closed";
/** Opens a client to `url` (`ws://host:port/ws`) and starts connecting. */
export declare function connect(url: string, options?: ClientOptions): Client;
export declare class Client {
    readonly url: string;
    state: ClientState;
    /** The session id of the current connection. */
    session: string;
    user: string;
    /** The current token's expiry (Unix seconds); undefined for anonymous sessions. */
    expiresAt: number | undefined;
    private readonly opts;
    private token;
    private ws;
    private nextId;
    private readonly pending;
    private readonly subs;
    private readonly listeners;
    private waiters;
    private attempt;
    private reconnectTimer;
    private pingTimer;
    private refreshTimer;
    private connectTimer;
    constructor(url: string, options?: ClientOptions);
    /** Calls `fn` on each `event`; returns a function that stops it. */
    on<K extends keyof ClientEvents>(event: K, fn: (ev: ClientEvents[K]) => void): () => void;
    private emit;
    /** Starts connecting (`connect()` does this). */
    start(): void;
    /** Resolves once connected (at once when already), or rejects after `timeout` ms. */
    ready(timeout?: number): Promise<void>;
    /** Subscribes to `channel`; the subscription lives until `unsubscribe()`, across reconnects. */
    subscribe(channel: string, handlers?: SubscriptionHandlers): Subscription;
    /** The subscription to `channel`, if the client holds one. */
    getSubscription(channel: string): Subscription | undefined;
    /** Publishes `data` (any JSON value) on `channel`; resolves to its position (with history). */
    publish(channel: string, data: unknown): Promise<Partial<Position>>;
    /** Part of a channel's history. */
    history(channel: string, options?: HistoryOptions): Promise<HistoryResult>;
    /** The sessions subscribed to `channel` (namespaces with `presence`). */
    presence(channel: string): Promise<ClientInfo[]>;
    /** How many sessions and distinct users are subscribed to `channel`. */
    presenceStats(channel: string): Promise<PresenceStats>;
    /** Calls backend method `method` with `data`; resolves to its answer. */
    rpc(method: string, data: unknown): Promise<{
        data?: unknown;
        b64data?: string;
    }>;
    /** Sends `data` to the backends, fire and forget (resolves once the gateway took it). */
    send(data: unknown): Promise<void>;
    /** One application-level round trip. */
    ping(): Promise<void>;
    /** Closes the connection for good: no reconnect, pending commands fail. */
    close(): void;
    /** @internal */
    call(command: string, body: object, timeout?: number): Promise<any>;
    /** @internal */
    forget(sub: Subscription): void;
    /** @internal: sends one command on the current socket and waits for its reply. */
    request(command: string, body: object, timeout?: number): Promise<any>;
    /** @internal: (re)subscribes `sub` on the current connection, from its position. */
    sendSubscribe(sub: Subscription): void;
    private open;
    private connected;
    /** The link is gone (the server closed it, or the network did). */
    private lost;
    /** Gives up on the current link (no reply in time) and reconnects. */
    private drop;
    private scheduleReconnect;
    /** Full jitter: uniformly random in [0, min(max, min · 2^attempt)). */
    private backoff;
    private schedulePing;
    /** Refreshes `refreshBefore` ms before `expiresAt`, or half-way there for a token that lives
     * shorter than twice that; a failed refresh is retried with backoff until the link ends. */
    private scheduleRefresh;
    private clearTimers;
    private failPending;
    private wakeWaiters;
    private frame;
}
/** A channel the client holds; it lives across reconnects until `unsubscribe()`. */
export declare class Subscription {
    readonly channel: string;
    state: "subscribing" | "subscribed" | "unsubscribed";
    /** The position of the last publication received (or of the subscribe reply), with history. */
    position: Position | undefined;
    /** @internal */
    readonly handlers: SubscriptionHandlers;
    /** @internal */
    attempts: number;
    private readonly client;
    private waiters;
    /** @internal */
    constructor(client: Client, channel: string, handlers: SubscriptionHandlers);
    /** Resolves at the next subscribe reply (at once, with `resumed: false`, when subscribed). */
    ready(): Promise<SubscribedEvent>;
    /** Stops the subscription (also on the server, when connected). */
    unsubscribe(): Promise<void>;
    publish(data: unknown): Promise<Partial<Position>>;
    history(options?: HistoryOptions): Promise<HistoryResult>;
    presence(): Promise<ClientInfo[]>;
    presenceStats(): Promise<PresenceStats>;
    /** @internal: a subscribe reply. `resumed`: it carried `recover`. */
    started(r: any, resumed: boolean): void;
    /** @internal: a publication pushed for this channel. */
    publication(pub: Publication): void;
}
