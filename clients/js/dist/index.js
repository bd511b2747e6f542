// Switchboard client for browsers and Node: the JSON encoding of client protocol v1
// (docs/protocol.md). One `Client` holds one WebSocket at a time; when it drops, the client
// reconnects with exponential backoff and full jitter (unless the close code says not to),
// subscribes again to every channel it held, resuming each channel with history from the last
// position it received, and tells the application when that position could not be recovered.
// It refreshes its token through `getToken` before it expires, and sends an application-level
// `ping` on an interval, since browsers hide WebSocket pings from scripts.
import { ClientErrorCodes, ErrorCodes, shouldReconnect } from "./codes.js";
export { CLOSE_CODES, ClientErrorCodes, ErrorCodes, shouldReconnect } from "./codes.js";
/** The subprotocol of the JSON encoding. */
export const SUBPROTOCOL = "switchboard.v1.json";
/** A command's error: the server's (`code` 100 and up) or the client's own (1 to 3). */
export class SwitchboardError extends Error {
    constructor(code, message, temporary) {
        super(message);
        this.name = "SwitchboardError";
        this.code = code;
        this.temporary = temporary;
    }
}
const OPEN = 1;
/** Opens a client to `url` (`ws://host:port/ws`) and starts connecting. */
export function connect(url, options = {}) {
    const client = new Client(url, options);
    client.start();
    return client;
}
export class Client {
    constructor(url, options = {}) {
        this.state = "disconnected";
        /** The session id of the current connection. */
        this.session = "";
        this.user = "";
        this.ws = null;
        this.nextId = 0;
        this.pending = new Map();
        this.subs = new Map();
        this.listeners = new Map();
        this.waiters = [];
        this.attempt = 0;
        this.reconnectTimer = null;
        this.pingTimer = null;
        this.refreshTimer = null;
        this.connectTimer = null;
        this.url = url;
        this.token = options.token;
        const ws = options.WebSocket ?? globalThis.WebSocket;
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
    on(event, fn) {
        let set = this.listeners.get(event);
        if (!set)
            this.listeners.set(event, (set = new Set()));
        set.add(fn);
        return () => set.delete(fn);
    }
    emit(event, ev) {
        for (const fn of this.listeners.get(event) ?? []) {
            try {
                fn(ev);
            }
            catch (e) {
                if (event !== "error")
                    this.emit("error", e instanceof Error ? e : new Error(String(e)));
            }
        }
    }
    // === public API ===
    /** Starts connecting (`connect()` does this). */
    start() {
        if (this.state !== "disconnected" || this.reconnectTimer)
            return;
        void this.open();
    }
    /** Resolves once connected (at once when already), or rejects after `timeout` ms. */
    ready(timeout = this.opts.timeout) {
        if (this.state === "connected")
            return Promise.resolve();
        if (this.state === "closed")
            return Promise.reject(closedError());
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.waiters = this.waiters.filter((w) => w !== done);
                reject(new SwitchboardError(ClientErrorCodes.TIMEOUT, "not connected in time", true));
            }, timeout);
            const done = () => {
                clearTimeout(timer);
                if (this.state === "closed")
                    reject(closedError());
                else
                    resolve();
            };
            this.waiters.push(done);
        });
    }
    /** Subscribes to `channel`; the subscription lives until `unsubscribe()`, across reconnects. */
    subscribe(channel, handlers = {}) {
        if (this.state === "closed")
            throw closedError();
        if (this.subs.has(channel))
            throw new SwitchboardError(ErrorCodes.ALREADY_SUBSCRIBED, `already subscribed to ${channel}`, false);
        const sub = new Subscription(this, channel, handlers);
        this.subs.set(channel, sub);
        if (this.state === "connected")
            this.sendSubscribe(sub);
        return sub;
    }
    /** The subscription to `channel`, if the client holds one. */
    getSubscription(channel) {
        return this.subs.get(channel);
    }
    /** Publishes `data` (any JSON value) on `channel`; resolves to its position (with history). */
    async publish(channel, data) {
        const r = await this.call("publish", { channel, data: data === undefined ? null : data });
        return r.epoch ? { offset: r.offset ?? 0, epoch: r.epoch } : {};
    }
    /** Part of a channel's history. */
    async history(channel, options = {}) {
        const r = await this.call("history", { channel, ...options });
        return { publications: r.publications ?? [], offset: r.offset, epoch: r.epoch, continuous: !!r.continuous };
    }
    /** The sessions subscribed to `channel` (namespaces with `presence`). */
    async presence(channel) {
        const r = await this.call("presence", { channel });
        return r.clients ?? [];
    }
    /** How many sessions and distinct users are subscribed to `channel`. */
    async presenceStats(channel) {
        const r = await this.call("presence_stats", { channel });
        return { sessions: r.sessions ?? 0, users: r.users ?? 0 };
    }
    /** Calls backend method `method` with `data`; resolves to its answer. */
    async rpc(method, data) {
        const r = await this.call("rpc", { method, data: data === undefined ? null : data });
        return { data: r.data, b64data: r.b64data };
    }
    /** Sends `data` to the backends, fire and forget (resolves once the gateway took it). */
    async send(data) {
        await this.call("send", { data: data === undefined ? null : data });
    }
    /** One application-level round trip. */
    async ping() {
        await this.call("ping", {});
    }
    /** Closes the connection for good: no reconnect, pending commands fail. */
    close() {
        if (this.state === "closed")
            return;
        this.state = "closed";
        this.clearTimers();
        if (this.reconnectTimer)
            clearTimeout(this.reconnectTimer);
        this.reconnectTimer = null;
        const ws = this.ws;
        this.ws = null;
        if (ws) {
            detach(ws);
            try {
                ws.close(1000);
            }
            catch {
                // Already closed.
            }
        }
        this.failPending(closedError());
        this.wakeWaiters();
    }
    // === internals used by Subscription ===
    /** @internal */
    async call(command, body, timeout = this.opts.timeout) {
        if (this.state === "closed")
            throw closedError();
        if (this.state !== "connected")
            await this.ready(timeout);
        return this.request(command, body, timeout);
    }
    /** @internal */
    forget(sub) {
        if (this.subs.get(sub.channel) === sub)
            this.subs.delete(sub.channel);
    }
    /** @internal: sends one command on the current socket and waits for its reply. */
    request(command, body, timeout = this.opts.timeout) {
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
            }
            catch (e) {
                clearTimeout(timer);
                this.pending.delete(id);
                reject(new SwitchboardError(ClientErrorCodes.DISCONNECTED, `cannot send: ${e}`, true));
            }
        });
    }
    /** @internal: (re)subscribes `sub` on the current connection, from its position. */
    sendSubscribe(sub) {
        const recover = sub.position;
        const body = { channel: sub.channel };
        if (recover)
            body.recover = { offset: recover.offset, epoch: recover.epoch };
        sub.state = "subscribing";
        const ws = this.ws;
        this.request("subscribe", body).then((r) => {
            if (this.subs.get(sub.channel) !== sub || this.ws !== ws)
                return;
            sub.started(r, !!recover);
        }, (err) => {
            if (this.subs.get(sub.channel) !== sub || this.ws !== ws)
                return;
            if (err.code === ClientErrorCodes.DISCONNECTED)
                return; // Resubscribed after the reconnect.
            if (err.temporary) {
                // 110 or a reply timeout: try again on this connection after a backoff delay.
                const delay = this.backoff(sub.attempts++);
                setTimeout(() => {
                    if (this.subs.get(sub.channel) === sub && this.ws === ws && this.state === "connected")
                        this.sendSubscribe(sub);
                }, delay);
                return;
            }
            this.forget(sub);
            sub.state = "unsubscribed";
            sub.handlers.onError?.(err);
        });
    }
    // === connection life ===
    async open() {
        this.reconnectTimer = null;
        if (this.state === "closed")
            return;
        this.state = "connecting";
        this.emit("connecting", { attempt: this.attempt });
        if (!this.token && this.opts.getToken) {
            try {
                this.token = await this.opts.getToken();
            }
            catch (e) {
                this.emit("error", new Error(`getToken failed: ${e}`));
                this.scheduleReconnect(1006, "getToken failed");
                return;
            }
            if (this.state !== "connecting")
                return; // Closed meanwhile.
        }
        let ws;
        try {
            ws = new this.opts.WebSocket(this.url, [SUBPROTOCOL]);
        }
        catch (e) {
            this.emit("error", e instanceof Error ? e : new Error(String(e)));
            this.scheduleReconnect(1006, "cannot open a WebSocket");
            return;
        }
        this.ws = ws;
        // The upgrade, the connect command and its reply, within `timeout`.
        this.connectTimer = setTimeout(() => this.drop(1006, "connect timeout"), this.opts.timeout);
        ws.onopen = () => {
            const connect = { name: this.opts.name };
            if (this.opts.version)
                connect.version = this.opts.version;
            if (this.token)
                connect.token = this.token;
            this.request("connect", connect).then((r) => this.ws === ws && this.connected(r), (err) => this.ws === ws && this.drop(1006, `connect failed: ${err.message}`));
        };
        ws.onmessage = (ev) => this.ws === ws && this.frame(ev.data);
        ws.onerror = () => {
            // A close event follows; it carries what is known.
        };
        ws.onclose = (ev) => {
            if (this.ws !== ws)
                return;
            this.lost(ev.code || 1006, ev.reason || "");
        };
    }
    connected(r) {
        if (this.connectTimer)
            clearTimeout(this.connectTimer);
        this.connectTimer = null;
        this.state = "connected";
        this.attempt = 0;
        this.session = r.session ?? "";
        this.user = r.user ?? "";
        const ev = { session: this.session, user: this.user, pingInterval: r.ping_interval ?? 0 };
        this.expiresAt = r.expires_at || undefined;
        if (r.expires_at)
            ev.expiresAt = r.expires_at;
        this.schedulePing();
        if (r.expires_at)
            this.scheduleRefresh(r.expires_at);
        for (const sub of this.subs.values())
            this.sendSubscribe(sub);
        this.emit("connected", ev);
        this.wakeWaiters();
    }
    /** The link is gone (the server closed it, or the network did). */
    lost(code, reason) {
        const ws = this.ws;
        if (ws)
            detach(ws);
        this.ws = null;
        this.clearTimers();
        this.failPending(new SwitchboardError(ClientErrorCodes.DISCONNECTED, `connection closed (${code})`, true));
        // An expired token gets replaced by a fresh one from `getToken` on the next attempt.
        if (code === 4006 && this.opts.getToken)
            this.token = undefined;
        if (shouldReconnect(code)) {
            this.scheduleReconnect(code, reason);
        }
        else {
            this.state = "closed";
            this.emit("disconnected", { code, reason, reconnect: false });
            this.wakeWaiters();
        }
    }
    /** Gives up on the current link (no reply in time) and reconnects. */
    drop(code, reason) {
        const ws = this.ws;
        if (!ws)
            return;
        detach(ws);
        this.ws = null;
        try {
            ws.close(1000, reason.slice(0, 120));
        }
        catch {
            // Never opened.
        }
        this.lost(code, reason);
    }
    scheduleReconnect(code, reason) {
        const delay = this.backoff(this.attempt++);
        this.state = "disconnected";
        this.emit("disconnected", { code, reason, reconnect: true, delay });
        this.reconnectTimer = setTimeout(() => void this.open(), delay);
    }
    /** Full jitter: uniformly random in [0, min(max, min · 2^attempt)). */
    backoff(attempt) {
        const cap = Math.min(this.opts.maxReconnectDelay, this.opts.minReconnectDelay * 2 ** Math.min(attempt, 30));
        return Math.floor(this.opts.random() * cap);
    }
    schedulePing() {
        if (this.opts.pingInterval <= 0)
            return;
        this.pingTimer = setTimeout(() => {
            const ws = this.ws;
            this.request("ping", {}, this.opts.pingTimeout).then(() => this.ws === ws && this.state === "connected" && this.schedulePing(), (err) => {
                if (this.ws === ws && err.code === ClientErrorCodes.TIMEOUT)
                    this.drop(1006, "ping timeout");
            });
        }, this.opts.pingInterval);
    }
    /** Refreshes `refreshBefore` ms before `expiresAt`, or half-way there for a token that lives
     * shorter than twice that; a failed refresh is retried with backoff until the link ends. */
    scheduleRefresh(expiresAt, retry = 0) {
        if (!this.opts.getToken)
            return;
        const left = expiresAt * 1000 - Date.now();
        const delay = retry > 0 ? this.backoff(retry) : Math.max(0, left - this.opts.refreshBefore, left / 2);
        const ws = this.ws;
        this.refreshTimer = setTimeout(async () => {
            let token;
            try {
                token = await this.opts.getToken();
                if (this.ws !== ws)
                    return;
                const r = await this.request("refresh", { token });
                this.token = token;
                this.expiresAt = r.expires_at ?? expiresAt;
                this.scheduleRefresh(r.expires_at ?? expiresAt);
            }
            catch (e) {
                if (this.ws !== ws)
                    return;
                this.emit("error", new Error(`token refresh failed: ${e instanceof Error ? e.message : e}`));
                this.scheduleRefresh(expiresAt, retry + 1);
            }
        }, delay);
    }
    clearTimers() {
        for (const t of [this.pingTimer, this.refreshTimer, this.connectTimer])
            if (t)
                clearTimeout(t);
        this.pingTimer = this.refreshTimer = this.connectTimer = null;
    }
    failPending(err) {
        for (const p of this.pending.values()) {
            clearTimeout(p.timer);
            p.reject(err);
        }
        this.pending.clear();
    }
    wakeWaiters() {
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters)
            w();
    }
    // === frames ===
    frame(data) {
        let msg;
        try {
            msg = JSON.parse(typeof data === "string" ? data : String(data));
        }
        catch {
            this.emit("error", new Error("the server sent a frame that is not JSON"));
            return;
        }
        if (msg.id) {
            const p = this.pending.get(msg.id);
            if (!p)
                return;
            this.pending.delete(msg.id);
            clearTimeout(p.timer);
            if (msg.error)
                p.reject(new SwitchboardError(msg.error.code, msg.error.message, !!msg.error.temporary));
            else {
                const key = Object.keys(msg).find((k) => k !== "id");
                p.resolve(key ? msg[key] : {});
            }
            return;
        }
        if (msg.pub) {
            const sub = this.subs.get(msg.pub.channel);
            if (sub)
                sub.publication(msg.pub);
            else
                this.emit("publication", msg.pub);
        }
        else if (msg.join) {
            this.subs.get(msg.join.channel)?.handlers.onJoin?.(msg.join.client);
        }
        else if (msg.leave) {
            this.subs.get(msg.leave.channel)?.handlers.onLeave?.(msg.leave.client);
        }
        else if (msg.message) {
            this.emit("message", msg.message);
        }
        else if (msg.subscribed) {
            const s = msg.subscribed;
            this.emit("subscribed", { channel: s.channel, position: s.epoch ? { offset: s.offset ?? 0, epoch: s.epoch } : undefined });
        }
        else if (msg.unsubscribed) {
            const u = msg.unsubscribed;
            const sub = this.subs.get(u.channel);
            if (sub && u.resubscribe) {
                // Publications were lost on their way: subscribe again from the last one received.
                this.sendSubscribe(sub);
            }
            else if (sub) {
                this.forget(sub);
                sub.state = "unsubscribed";
                sub.handlers.onUnsubscribed?.({ byServer: true });
            }
            else {
                this.emit("unsubscribed", { channel: u.channel });
            }
        }
    }
}
/** A channel the client holds; it lives across reconnects until `unsubscribe()`. */
export class Subscription {
    /** @internal */
    constructor(client, channel, handlers) {
        this.state = "subscribing";
        /** @internal */
        this.attempts = 0;
        this.waiters = [];
        this.client = client;
        this.channel = channel;
        this.handlers = { ...handlers };
        const onError = handlers.onError;
        this.handlers.onError = (err) => {
            for (const w of this.waiters.splice(0))
                w.reject(err);
            onError?.(err);
        };
    }
    /** Resolves at the next subscribe reply (at once, with `resumed: false`, when subscribed). */
    ready() {
        if (this.state === "subscribed") {
            return Promise.resolve({ resumed: false, recovered: false, history: !!this.position, position: this.position });
        }
        if (this.state === "unsubscribed") {
            return Promise.reject(new SwitchboardError(ErrorCodes.NOT_SUBSCRIBED, `not subscribed to ${this.channel}`, false));
        }
        return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    }
    /** Stops the subscription (also on the server, when connected). */
    async unsubscribe() {
        if (this.state === "unsubscribed")
            return;
        this.state = "unsubscribed";
        this.client.forget(this);
        for (const w of this.waiters.splice(0)) {
            w.reject(new SwitchboardError(ErrorCodes.NOT_SUBSCRIBED, `unsubscribed from ${this.channel}`, false));
        }
        if (this.client.state !== "connected")
            return;
        try {
            await this.client.request("unsubscribe", { channel: this.channel });
        }
        catch (e) {
            // Not subscribed on the server (any more), or the link went: either way it is over.
            if (!(e instanceof SwitchboardError) || (e.code !== ErrorCodes.NOT_SUBSCRIBED && e.code !== ClientErrorCodes.DISCONNECTED))
                throw e;
        }
    }
    publish(data) {
        return this.client.publish(this.channel, data);
    }
    history(options = {}) {
        return this.client.history(this.channel, options);
    }
    presence() {
        return this.client.presence(this.channel);
    }
    presenceStats() {
        return this.client.presenceStats(this.channel);
    }
    /** @internal: a subscribe reply. `resumed`: it carried `recover`. */
    started(r, resumed) {
        this.state = "subscribed";
        this.attempts = 0;
        const history = !!r.history;
        const recovered = !!r.recovered;
        if (!history) {
            this.position = undefined;
        }
        else if (!(resumed && recovered)) {
            // The reply's position, unless a newer publication of the same epoch came first.
            const p = this.position;
            if (!(p && !resumed && p.epoch === r.epoch && p.offset >= (r.offset ?? 0))) {
                this.position = { offset: r.offset ?? 0, epoch: r.epoch ?? "" };
            }
        }
        const ev = { resumed, recovered, history, position: this.position };
        for (const w of this.waiters.splice(0))
            w.resolve(ev);
        this.handlers.onSubscribed?.(ev);
    }
    /** @internal: a publication pushed for this channel. */
    publication(pub) {
        if (this.state === "unsubscribed")
            return;
        if (pub.offset !== undefined && pub.epoch !== undefined) {
            const p = this.position;
            // Offsets only grow within an epoch: an older one is a duplicate.
            if (p && p.epoch === pub.epoch && pub.offset <= p.offset)
                return;
            this.position = { offset: pub.offset, epoch: pub.epoch };
        }
        this.handlers.onPublication?.(pub);
    }
}
function detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    // Not null: Node's `ws` raises an error event when a socket still connecting is closed,
    // and an error event nobody listens to is thrown.
    ws.onerror = () => { };
}
function closedError() {
    return new SwitchboardError(ClientErrorCodes.CLOSED, "the client is closed", false);
}
