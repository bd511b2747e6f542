// Switchboard client for browsers and Node: the JSON encoding of client protocol v1
// (docs/protocol.md). One `Client` holds one WebSocket at a time; when it drops, the client
// reconnects with exponential backoff and full jitter (unless the close code says not to),
// subscribes again to every channel it held, resuming each channel with history from the last
// position it received, and tells the application when that position could not be recovered.
// It refreshes its token through `getToken` before it expires, and sends an application-level
// `ping` on an interval, since browsers hide WebSocket pings from scripts.

import { ClientErrorCodes, ErrorCodes, shouldReconnect } from "./codes.js";

export { CLOSE_CODES, ClientErrorCodes, ErrorCodes, shouldReconnect } from "./codes.js";
export type { CloseCode } from "./codes.js";

/** The subprotocol of the JSON encoding. */
export const SUBPROTOCOL = "switchboard.v1.json";

/** What the client needs of a WebSocket: the browser's `WebSocket`, or Node's `ws`. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
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
  onUnsubscribed?: (ev: { byServer: boolean }) => void;
  onError?: (err: SwitchboardError) => void;
}

/** A command's error: the server's (`code` 100 and up) or the client's own (1 to 3). */
export class SwitchboardError extends Error {
  readonly code: number;
  readonly temporary: boolean;
  constructor(code: number, message: string, temporary: boolean) {
    super(message);
    this.name = "SwitchboardError";
    this.code = code;
    this.temporary = temporary;
  }
}

type ClientEvents = {
  connecting: { attempt: number };
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  error: Error;
  message: { data?: unknown; b64data?: string };
  publication: Publication;
  subscribed: { channel: string; position?: Position };
  unsubscribed: { channel: string };
};

export type ClientState = "connecting" | "connected" | "disconnected" | "closed";

interface Pending {
  resolve: (v: any) => void;
  reject: (e: SwitchboardError) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;

/** Opens a client to `url` (`ws://host:port/ws`) and starts connecting. */
export function connect(url: string, options: ClientOptions = {}): Client {
  const client = new Client(url, options);
  client.start();
  return client;
}

export class Client {
  readonly url: string;
  state: ClientState = "disconnected";
  /** The session id of the current connection. */
  session = "";
  user = "";
  /** The current token's expiry (Unix seconds); undefined for anonymous sessions. */
  expiresAt: number | undefined;

  private readonly opts: Required<Omit<ClientOptions, "token" | "getToken">> & Pick<ClientOptions, "getToken">;
  private token: string | undefined;
  private ws: WebSocketLike | null = null;
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly subs = new Map<string, Subscription>();
  private readonly listeners = new Map<keyof ClientEvents, Set<(ev: any) => void>>();
  private waiters: Array<() => void> = [];
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setTimeout> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private connectTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(url: string, options: ClientOptions = {}) {
    this.url = url;
    this.token = options.token;
    const ws = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!ws) {
      throw new Error("no WebSocket: pass the WebSocket option (e.g. the `ws` package's export in Node 18/20)");
    }
    this.opts = {
      WebSocket: ws,
      getToken: options.getToken,
      name: options.name ?? "switchboard-js",
      version: options.version ?? "",
      minReconnectDelay: options.minReconnectDelay ?? 500,
      maxReconnectDelay: options.maxReconnectDelay ?? 20000,
      timeout: options.timeout ?? 10000,
      pingInterval: options.pingInterval ?? 15000,
      pingTimeout: options.pingTimeout ?? 5000,
      refreshBefore: options.refreshBefore ?? 60000,
      random: options.random ?? Math.random,
    };
  }

  // === events ===

  /** Calls `fn` on each `event`; returns a function that stops it. */
  on<K extends keyof ClientEvents>(event: K, fn: (ev: ClientEvents[K]) => void): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  private emit<K extends keyof ClientEvents>(event: K, ev: ClientEvents[K]): void {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        fn(ev);
      } catch (e) {
        if (event !== "error") this.emit("error", e instanceof Error ? e : new Error(String(e)));
      }
    }
  }

  // === public API ===

  /** Starts connecting (`connect()` does this). */
  start(): void {
    if (this.state !== "disconnected" || this.reconnectTimer) return;
    void this.open();
  }

  /** Resolves once connected (at once when already), or rejects after `timeout` ms. */
  ready(timeout = this.opts.timeout): Promise<void> {
    if (this.state === "connected") return Promise.resolve();
    if (this.state === "closed") return Promise.reject(closedError());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new SwitchboardError(ClientErrorCodes.TIMEOUT, "not connected in time", true));
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        if (this.state === "closed") reject(closedError());
        else resolve();
      };
      this.waiters.push(done);
    });
  }

  /** Subscribes to `channel`; the subscription lives until `unsubscribe()`, across reconnects. */
  subscribe(channel: string, handlers: SubscriptionHandlers = {}): Subscription {
    if (this.state === "closed") throw closedError();
    if (this.subs.has(channel)) throw new SwitchboardError(ErrorCodes.ALREADY_SUBSCRIBED, `already subscribed to ${channel}`, false);
    const sub = new Subscription(this, channel, handlers);
    this.subs.set(channel, sub);
    if (this.state === "connected") this.sendSubscribe(sub);
    return sub;
  }

  /** The subscription to `channel`, if the client holds one. */
  getSubscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  /** Publishes `data` (any JSON value) on `channel`; resolves to its position (with history). */
  async publish(channel: string, data: unknown): Promise<Partial<Position>> {
    const r = await this.call("publish", { channel, data: data === undefined ? null : data });
    return r.epoch ? { offset: r.offset ?? 0, epoch: r.epoch } : {};
  }

  /** Part of a channel's history. */
  async history(channel: string, options: HistoryOptions = {}): Promise<HistoryResult> {
    const r = await this.call("history", { channel, ...options });
    return { publications: r.publications ?? [], offset: r.offset, epoch: r.epoch, continuous: !!r.continuous };
  }

  /** The sessions subscribed to `channel` (namespaces with `presence`). */
  async presence(channel: string): Promise<ClientInfo[]> {
    const r = await this.call("presence", { channel });
    return r.clients ?? [];
  }

  /** How many sessions and distinct users are subscribed to `channel`. */
  async presenceStats(channel: string): Promise<PresenceStats> {
    const r = await this.call("presence_stats", { channel });
    return { sessions: r.sessions ?? 0, users: r.users ?? 0 };
  }

  /** Calls backend method `method` with `data`; resolves to its answer. */
  async rpc(method: string, data: unknown): Promise<{ data?: unknown; b64data?: string }> {
    const r = await this.call("rpc", { method, data: data === undefined ? null : data });
    return { data: r.data, b64data: r.b64data };
  }

  /** Sends `data` to the backends, fire and forget (resolves once the gateway took it). */
  async send(data: unknown): Promise<void> {
    await this.call("send", { data: data === undefined ? null : data });
  }

  /** One application-level round trip. */
  async ping(): Promise<void> {
    await this.call("ping", {});
  }

  /** Closes the connection for good: no reconnect, pending commands fail. */
  close(): void {
    if (this.state === "closed") return;
    this.state = "closed";
    this.clearTimers();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000);
      } catch {
        // Already closed.
      }
    }
    this.failPending(closedError());
    this.wakeWaiters();
  }

  // === internals used by Subscription ===

  /** @internal */
  async call(command: string, body: object, timeout = this.opts.timeout): Promise<any> {
    if (this.state === "closed") throw closedError();
    if (this.state !== "connected") await this.ready(timeout);
    return this.request(command, body, timeout);
  }

  /** @internal */
  forget(sub: Subscription): void {
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
  }

  /** @internal: sends one command on the current socket and waits for its reply. */
  request(command: string, body: object, timeout = this.opts.timeout): Promise<any> {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) {
      return Promise.reject(new SwitchboardError(ClientErrorCodes.DISCONNECTED, "not connected", true));
    }
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const id = this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SwitchboardError(ClientErrorCodes.TIMEOUT, `no reply to ${command} within ${timeout} ms`, true));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer });
      try {
        ws.send(JSON.stringify({ id, [command]: body }));
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new SwitchboardError(ClientErrorCodes.DISCONNECTED, `cannot send: ${e}`, true));
      }
    });
  }

  /** @internal: (re)subscribes `sub` on the current connection, from its position. */
  sendSubscribe(sub: Subscription): void {
    const recover = sub.position;
    const body: Record<string, unknown> = { channel: sub.channel };
    if (recover) body.recover = { offset: recover.offset, epoch: recover.epoch };
    sub.state = "subscribing";
    const ws = this.ws;
    this.request("subscribe", body).then(
      (r) => {
        if (this.subs.get(sub.channel) !== sub || this.ws !== ws) return;
        sub.started(r, !!recover);
      },
      (err: SwitchboardError) => {
        if (this.subs.get(sub.channel) !== sub || this.ws !== ws) return;
        if (err.code === ClientErrorCodes.DISCONNECTED) return; // Resubscribed after the reconnect.
        if (err.temporary) {
          // 110 or a reply timeout: try again on this connection after a backoff delay.
          const delay = this.backoff(sub.attempts++);
          setTimeout(() => {
            if (this.subs.get(sub.channel) === sub && this.ws === ws && this.state === "connected") this.sendSubscribe(sub);
          }, delay);
          return;
        }
        this.forget(sub);
        sub.state = "unsubscribed";
        sub.handlers.onError?.(err);
      },
    );
  }

  // === connection life ===

  private async open(): Promise<void> {
    this.reconnectTimer = null;
    if (this.state === "closed") return;
    this.state = "connecting";
    this.emit("connecting", { attempt: this.attempt });
    if (!this.token && this.opts.getToken) {
      try {
        this.token = await this.opts.getToken();
      } catch (e) {
        this.emit("error", new Error(`getToken failed: ${e}`));
        this.scheduleReconnect(1006, "getToken failed");
        return;
      }
      if (this.state !== "connecting") return; // Closed meanwhile.
    }
    let ws: WebSocketLike;
    try {
      ws = new this.opts.WebSocket(this.url, [SUBPROTOCOL]) as WebSocketLike;
    } catch (e) {
      this.emit("error", e instanceof Error ? e : new Error(String(e)));
      this.scheduleReconnect(1006, "cannot open a WebSocket");
      return;
    }
    this.ws = ws;
    // The upgrade, the connect command and its reply, within `timeout`.
    this.connectTimer = setTimeout(() => this.drop(1006, "connect timeout"), this.opts.timeout);
    ws.onopen = () => {
      const connect: Record<string, string> = { name: this.opts.name };
      if (this.opts.version) connect.version = this.opts.version;
      if (this.token) connect.token = this.token;
      this.request("connect", connect).then(
        (r) => this.ws === ws && this.connected(r),
        (err: SwitchboardError) => this.ws === ws && this.drop(1006, `connect failed: ${err.message}`),
      );
    };
    ws.onmessage = (ev) => this.ws === ws && this.frame(ev.data);
    ws.onerror = () => {
      // A close event follows; it carries what is known.
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.lost(ev.code || 1006, ev.reason || "");
    };
  }

  private connected(r: any): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.state = "connected";
    this.attempt = 0;
    this.session = r.session ?? "";
    this.user = r.user ?? "";
    const ev: ConnectedEvent = { session: this.session, user: this.user, pingInterval: r.ping_interval ?? 0 };
    this.expiresAt = r.expires_at || undefined;
    if (r.expires_at) ev.expiresAt = r.expires_at;
    this.schedulePing();
    if (r.expires_at) this.scheduleRefresh(r.expires_at);
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
    this.emit("connected", ev);
    this.wakeWaiters();
  }

  /** The link is gone (the server closed it, or the network did). */
  private lost(code: number, reason: string): void {
    const ws = this.ws;
    if (ws) detach(ws);
    this.ws = null;
    this.clearTimers();
    this.failPending(new SwitchboardError(ClientErrorCodes.DISCONNECTED, `connection closed (${code})`, true));
    // An expired token gets replaced by a fresh one from `getToken` on the next attempt.
    if (code === 4006 && this.opts.getToken) this.token = undefined;
    if (shouldReconnect(code)) {
      this.scheduleReconnect(code, reason);
    } else {
      this.state = "closed";
      this.emit("disconnected", { code, reason, reconnect: false });
      this.wakeWaiters();
    }
  }

  /** Gives up on the current link (no reply in time) and reconnects. */
  private drop(code: number, reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    detach(ws);
    this.ws = null;
    try {
      ws.close(1000, reason.slice(0, 120));
    } catch {
      // Never opened.
    }
    this.lost(code, reason);
  }

  private scheduleReconnect(code: number, reason: string): void {
    const delay = this.backoff(this.attempt++);
    this.state = "disconnected";
    this.emit("disconnected", { code, reason, reconnect: true, delay });
    this.reconnectTimer = setTimeout(() => void this.open(), delay);
  }

  /** Full jitter: uniformly random in [0, min(max, min · 2^attempt)). */
  private backoff(attempt: number): number {
    const cap = Math.min(this.opts.maxReconnectDelay, this.opts.minReconnectDelay * 2 ** Math.min(attempt, 30));
    return Math.floor(this.opts.random() * cap);
  }

  private schedulePing(): void {
    if (this.opts.pingInterval <= 0) return;
    this.pingTimer = setTimeout(() => {
      const ws = this.ws;
      this.request("ping", {}, this.opts.pingTimeout).then(
        () => this.ws === ws && this.state === "connected" && this.schedulePing(),
        (err: SwitchboardError) => {
          if (this.ws === ws && err.code === ClientErrorCodes.TIMEOUT) this.drop(1006, "ping timeout");
        },
      );
    }, this.opts.pingInterval);
  }

  /** Refreshes `refreshBefore` ms before `expiresAt`, or half-way there for a token that lives
   * shorter than twice that; a failed refresh is retried with backoff until the link ends. */
  private scheduleRefresh(expiresAt: number, retry = 0): void {
    if (!this.opts.getToken) return;
    const left = expiresAt * 1000 - Date.now();
    const delay = retry > 0 ? this.backoff(retry) : Math.max(0, left - this.opts.refreshBefore, left / 2);
    const ws = this.ws;
    this.refreshTimer = setTimeout(async () => {
      let token: string;
      try {
        token = await this.opts.getToken!();
        if (this.ws !== ws) return;
        const r = await this.request("refresh", { token });
        this.token = token;
        this.expiresAt = r.expires_at ?? expiresAt;
        this.scheduleRefresh(r.expires_at ?? expiresAt);
      } catch (e) {
        if (this.ws !== ws) return;
        this.emit("error", new Error(`token refresh failed: ${e instanceof Error ? e.message : e}`));
        this.scheduleRefresh(expiresAt, retry + 1);
      }
    }, delay);
  }

  private clearTimers(): void {
    for (const t of [this.pingTimer, this.refreshTimer, this.connectTimer]) if (t) clearTimeout(t);
    this.pingTimer = this.refreshTimer = this.connectTimer = null;
  }

  private failPending(err: SwitchboardError): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  private wakeWaiters(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  // === frames ===

  private frame(data: unknown): void {
    let msg: any;
    try {
      msg = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      this.emit("error", new Error("the server sent a frame that is not JSON"));
      return;
    }
    if (msg.id) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new SwitchboardError(msg.error.code, msg.error.message, !!msg.error.temporary));
      else {
        const key = Object.keys(msg).find((k) => k !== "id");
        p.resolve(key ? msg[key] : {});
      }
      return;
    }
    if (msg.pub) {
      const sub = this.subs.get(msg.pub.channel);
      if (sub) sub.publication(msg.pub);
      else this.emit("publication", msg.pub);
    } else if (msg.join) {
      this.subs.get(msg.join.channel)?.handlers.onJoin?.(msg.join.client);
    } else if (msg.leave) {
      this.subs.get(msg.leave.channel)?.handlers.onLeave?.(msg.leave.client);
    } else if (msg.message) {
      this.emit("message", msg.message);
    } else if (msg.subscribed) {
      const s = msg.subscribed;
      this.emit("subscribed", { channel: s.channel, position: s.epoch ? { offset: s.offset ?? 0, epoch: s.epoch } : undefined });
    } else if (msg.unsubscribed) {
      const u = msg.unsubscribed;
      const sub = this.subs.get(u.channel);
      if (sub && u.resubscribe) {
        // Publications were lost on their way: subscribe again from the last one received.
        this.sendSubscribe(sub);
      } else if (sub) {
        this.forget(sub);
        sub.state = "unsubscribed";
        sub.handlers.onUnsubscribed?.({ byServer: true });
      } else {
        this.emit("unsubscribed", { channel: u.channel });
      }
    }
  }
}

/** A channel the client holds; it lives across reconnects until `unsubscribe()`. */
export class Subscription {
  readonly channel: string;
  state: "subscribing" | "subscribed" | "unsubscribed" = "subscribing";
  /** The position of the last publication received (or of the subscribe reply), with history. */
  position: Position | undefined;
  /** @internal */
  readonly handlers: SubscriptionHandlers;
  /** @internal */
  attempts = 0;
  private readonly client: Client;
  private waiters: Array<{ resolve: (ev: SubscribedEvent) => void; reject: (e: SwitchboardError) => void }> = [];

  /** @internal */
  constructor(client: Client, channel: string, handlers: SubscriptionHandlers) {
    this.client = client;
    this.channel = channel;
    this.handlers = { ...handlers };
    const onError = handlers.onError;
    this.handlers.onError = (err) => {
      for (const w of this.waiters.splice(0)) w.reject(err);
      onError?.(err);
    };
  }

  /** Resolves at the next subscribe reply (at once, with `resumed: false`, when subscribed). */
  ready(): Promise<SubscribedEvent> {
    if (this.state === "subscribed") {
      return Promise.resolve({ resumed: false, recovered: false, history: !!this.position, position: this.position });
    }
    if (this.state === "unsubscribed") {
      return Promise.reject(new SwitchboardError(ErrorCodes.NOT_SUBSCRIBED, `not subscribed to ${this.channel}`, false));
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** Stops the subscription (also on the server, when connected). */
  async unsubscribe(): Promise<void> {
    if (this.state === "unsubscribed") return;
    this.state = "unsubscribed";
    this.client.forget(this);
    for (const w of this.waiters.splice(0)) {
      w.reject(new SwitchboardError(ErrorCodes.NOT_SUBSCRIBED, `unsubscribed from ${this.channel}`, false));
    }
    if (this.client.state !== "connected") return;
    try {
      await this.client.request("unsubscribe", { channel: this.channel });
    } catch (e) {
      // Not subscribed on the server (any more), or the link went: either way it is over.
      if (!(e instanceof SwitchboardError) || (e.code !== ErrorCodes.NOT_SUBSCRIBED && e.code !== ClientErrorCodes.DISCONNECTED)) throw e;
    }
  }

  publish(data: unknown): Promise<Partial<Position>> {
    return this.client.publish(this.channel, data);
  }

  history(options: HistoryOptions = {}): Promise<HistoryResult> {
    return this.client.history(this.channel, options);
  }

  presence(): Promise<ClientInfo[]> {
    return this.client.presence(this.channel);
  }

  presenceStats(): Promise<PresenceStats> {
    return this.client.presenceStats(this.channel);
  }

  /** @internal: a subscribe reply. `resumed`: it carried `recover`. */
  started(r: any, resumed: boolean): void {
    this.state = "subscribed";
    this.attempts = 0;
    const history = !!r.history;
    const recovered = !!r.recovered;
    if (!history) {
      this.position = undefined;
    } else if (!(resumed && recovered)) {
      // The reply's position, unless a newer publication of the same epoch came first.
      const p = this.position;
      if (!(p && !resumed && p.epoch === r.epoch && p.offset >= (r.offset ?? 0))) {
        this.position = { offset: r.offset ?? 0, epoch: r.epoch ?? "" };
      }
    }
    const ev: SubscribedEvent = { resumed, recovered, history, position: this.position };
    for (const w of this.waiters.splice(0)) w.resolve(ev);
    this.handlers.onSubscribed?.(ev);
  }

  /** @internal: a publication pushed for this channel. */
  publication(pub: Publication): void {
    if (this.state === "unsubscribed") return;
    if (pub.offset !== undefined && pub.epoch !== undefined) {
      const p = this.position;
      // Offsets only grow within an epoch: an older one is a duplicate.
      if (p && p.epoch === pub.epoch && pub.offset <= p.offset) return;
      this.position = { offset: pub.offset, epoch: pub.epoch };
    }
    this.handlers.onPublication?.(pub);
  }
}

function detach(ws: WebSocketLike): void {
  ws.onopen = ws.onmessage = ws.onclose = null;
  // Not null: Node's `ws` raises an error event when a socket still connecting is closed,
  // and an error event nobody listens to is thrown.
  ws.onerror = () => {};
}

function closedError(): SwitchboardError {
  return new SwitchboardError(ClientErrorCodes.CLOSED, "the client is closed", false);
}
