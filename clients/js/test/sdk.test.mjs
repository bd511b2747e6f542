// The SDK against a real `switchboard dev` (target/debug/switchboard), with real WebSockets
// (the `ws` package: Node 18 and 20 have no global WebSocket) and a TCP proxy to cut links.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";

import { CLOSE_CODES, ClientErrorCodes, ErrorCodes, SwitchboardError, connect, shouldReconnect } from "../dist/index.js";
import { Proxy, ROOT, mintToken, startDev, waitFor } from "./harness.mjs";

// chat: history of 5 per channel (small, so a long absence is not recoverable), presence,
// join/leave; live: live-only.
const CONFIG = `
[channels.namespaces.chat]
history_size = 5
history_ttl = "1h"
presence = true
join_leave = true
`;

let dev;
before(async () => {
  dev = await startDev(CONFIG);
});
after(async () => {
  await dev?.proc.kill();
});

/** A client with the `ws` constructor; closed when the test ends. */
function client(t, url, options = {}) {
  const c = connect(url ?? dev.ws, { WebSocket, ...options });
  t.after(() => c.close());
  return c;
}

/** Collects a subscription's publications' data. */
function collector() {
  const got = [];
  return { got, onPublication: (p) => got.push(p.data) };
}

describe("connect and channels", { timeout: 60000 }, () => {
  test("a client connects, subscribes, publishes and receives its publication", async (t) => {
    const c = client(t);
    const connected = new Promise((r) => c.on("connected", r));
    const ev = await connected;
    assert.match(ev.session, /-/);
    assert.equal(ev.user, "");
    const col = collector();
    const sub = c.subscribe("live:one", col);
    const s = await sub.ready();
    assert.equal(s.history, false);
    const pos = await sub.publish({ text: "hi" });
    assert.deepEqual(pos, {}, "a live-only namespace gives no position");
    await waitFor("the publication", () => col.got.length === 1);
    assert.deepEqual(col.got, [{ text: "hi" }]);
  });

  test("commands made before the connection is up wait for it", async (t) => {
    const c = client(t);
    assert.equal(c.state, "connecting");
    await c.ping();
    const pos = await c.publish("chat:early", 1);
    assert.equal(typeof pos.offset, "number");
    assert.equal(typeof pos.epoch, "string");
  });

  test("an unsubscribed channel delivers nothing more and a second subscribe is refused client-side", async (t) => {
    const c = client(t);
    const col = collector();
    const sub = c.subscribe("live:two", col);
    await sub.ready();
    assert.throws(() => c.subscribe("live:two"), (e) => e instanceof SwitchboardError && e.code === ErrorCodes.ALREADY_SUBSCRIBED);
    await sub.unsubscribe();
    assert.equal(sub.state, "unsubscribed");
    // Another client's subscription shows the publication went out.
    const seen = collector();
    const s2 = client(t).subscribe("live:two", seen);
    await s2.ready();
    await c.publish("live:two", "marker");
    await waitFor("the marker on another client", () => seen.got.includes("marker"));
    assert.deepEqual(col.got, [], "nothing arrives after unsubscribe");
  });

  test("errors carry the server's code: invalid channel, no history, no backend for an rpc", async (t) => {
    const c = client(t);
    const cases = [
      [() => c.publish("bad channel", 1), ErrorCodes.INVALID_CHANNEL, false],
      [() => c.history("live:x"), ErrorCodes.NO_HISTORY, false],
      [() => c.presence("live:x"), ErrorCodes.NO_PRESENCE, false],
      [() => c.rpc("nobody-serves-this", {}), ErrorCodes.UNAVAILABLE, true],
    ];
    for (const [call, code, temporary] of cases) {
      await assert.rejects(call, (e) => e instanceof SwitchboardError && e.code === code && e.temporary === temporary, `code ${code}`);
    }
    await c.send({ up: 1 }); // Taken by the gateway even with no backend listening.
  });

  test("history returns what was published, oldest first", async (t) => {
    const c = client(t);
    for (const n of [1, 2, 3]) await c.publish("chat:hist", { n });
    const h = await c.history("chat:hist");
    assert.deepEqual(h.publications.map((p) => p.data), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    assert.equal(h.continuous, true);
    const last = await c.history("chat:hist", { limit: 1, reverse: true });
    assert.deepEqual(last.publications.map((p) => p.data), [{ n: 3 }]);
  });
});

describe("presence and join/leave", { timeout: 60000 }, () => {
  test("presence lists the subscribers with their token info; join and leave are pushed", async (t) => {
    const alice = client(t, dev.ws, { token: mintToken("alice", { info: { name: "Alice" } }) });
    const joins = [];
    const leaves = [];
    const sub = alice.subscribe("chat:room", { onJoin: (c) => joins.push(c), onLeave: (c) => leaves.push(c) });
    await sub.ready();
    await waitFor("alice's own join", () => joins.some((c) => c.user === "alice"));
    const bob = client(t, dev.ws, { token: mintToken("bob", { info: { name: "Bob" } }) });
    const bsub = bob.subscribe("chat:room");
    await bsub.ready();
    await waitFor("bob's join at alice", () => joins.some((c) => c.user === "bob" && c.info?.name === "Bob"));
    // The registry learns of subscriptions a moment after the join pushes go out.
    let who = [];
    await waitFor(() => `presence to list both (it lists ${JSON.stringify(who)})`, async () => {
      who = await sub.presence();
      return who.length === 2;
    });
    assert.deepEqual(who.map((c) => c.user).sort(), ["alice", "bob"]);
    assert.deepEqual(who.find((c) => c.user === "bob").info, { name: "Bob" });
    await waitFor("presence stats to count both", async () => (await sub.presenceStats()).sessions === 2);
    assert.deepEqual(await sub.presenceStats(), { sessions: 2, users: 2 });
    await bsub.unsubscribe();
    await waitFor("bob's leave at alice", () => leaves.some((c) => c.user === "bob" && c.session === bob.session));
    await waitFor("presence stats to count alice alone", async () => (await sub.presenceStats()).sessions === 1);
    assert.deepEqual(await sub.presenceStats(), { sessions: 1, users: 1 });
  });
});

describe("reconnects and recovery", { timeout: 60000 }, () => {
  test("after a network cut the client reconnects and recovers every missed publication, in order, once", async (t) => {
    const proxy = await Proxy.start(new URL(dev.ws).host);
    t.after(() => proxy.close());
    const c = client(t, proxy.url(), { minReconnectDelay: 20, maxReconnectDelay: 100 });
    const col = collector();
    const subscribed = [];
    const sub = c.subscribe("chat:rec", { ...col, onSubscribed: (e) => subscribed.push(e) });
    await sub.ready();
    const pub = client(t);
    await pub.publish("chat:rec", 1);
    await waitFor("the first publication", () => col.got.length === 1);
    const disconnected = [];
    c.on("disconnected", (e) => disconnected.push(e));
    proxy.cut();
    await waitFor("the client to see the cut", () => disconnected.length > 0);
    assert.equal(disconnected[0].code, 1006);
    assert.equal(disconnected[0].reconnect, true);
    for (const n of [2, 3, 4]) await pub.publish("chat:rec", n);
    proxy.restore();
    await waitFor("the resubscribe", () => subscribed.length === 2);
    assert.deepEqual(subscribed[1].resumed, true);
    assert.deepEqual(subscribed[1].recovered, true);
    await pub.publish("chat:rec", 5);
    await waitFor("every publication", () => col.got.length >= 5);
    assert.deepEqual(col.got, [1, 2, 3, 4, 5]);
  });

  test("a gap longer than the history surfaces recovered: false with the channel's new position", async (t) => {
    const proxy = await Proxy.start(new URL(dev.ws).host);
    t.after(() => proxy.close());
    const c = client(t, proxy.url(), { minReconnectDelay: 20, maxReconnectDelay: 100 });
    const subscribed = [];
    const sub = c.subscribe("chat:gap", { onSubscribed: (e) => subscribed.push(e) });
    await sub.ready();
    proxy.cut();
    await waitFor("the client to see the cut", () => c.state !== "connected");
    const pub = client(t);
    let last;
    for (let n = 0; n < 8; n++) last = await pub.publish("chat:gap", n); // history_size is 5
    proxy.restore();
    await waitFor("the resubscribe", () => subscribed.length === 2);
    assert.equal(subscribed[1].resumed, true);
    assert.equal(subscribed[1].recovered, false);
    assert.deepEqual(sub.position, { offset: last.offset, epoch: last.epoch });
  });

  test("a dead link (no answers, no close) is noticed by the application ping and reconnected", async (t) => {
    const proxy = await Proxy.start(new URL(dev.ws).host);
    t.after(() => proxy.close());
    const c = client(t, proxy.url(), { pingInterval: 100, pingTimeout: 300, minReconnectDelay: 20, maxReconnectDelay: 100 });
    await c.ready();
    const first = c.session;
    const disconnected = [];
    c.on("disconnected", (e) => disconnected.push(e));
    proxy.blackhole();
    await waitFor("the ping timeout", () => disconnected.length > 0);
    assert.equal(disconnected[0].reason, "ping timeout");
    assert.equal(disconnected[0].reconnect, true);
    proxy.restore();
    await waitFor("a new session", () => c.state === "connected" && c.session !== first);
  });

  test("reconnect delays grow exponentially to the cap, with full jitter", async (t) => {
    // A port with nothing listening: every attempt fails at once (close 1006).
    const dead = await Proxy.start("127.0.0.1:1");
    dead.cut();
    t.after(() => dead.close());
    const delays = [];
    const c = client(t, dead.url(), { minReconnectDelay: 10, maxReconnectDelay: 40, random: () => 0.999 });
    c.on("disconnected", (e) => delays.push(e.delay));
    await waitFor("five attempts", () => delays.length >= 5);
    assert.deepEqual(delays.slice(0, 5), [9, 19, 39, 39, 39]);
    const zero = client(t, dead.url(), { minReconnectDelay: 10, maxReconnectDelay: 40, random: () => 0 });
    const z = [];
    zero.on("disconnected", (e) => z.push(e.delay));
    await waitFor("three attempts", () => z.length >= 3);
    assert.deepEqual(z.slice(0, 3), [0, 0, 0], "full jitter reaches down to zero");
  });

  test("a close code that says not to reconnect ends the client", async (t) => {
    const c = client(t, dev.ws, { token: mintToken("mallory", { secret: "not-the-secret" }) });
    const disconnected = await new Promise((r) => c.on("disconnected", r));
    assert.equal(disconnected.code, 4501);
    assert.equal(disconnected.reconnect, false);
    assert.equal(c.state, "closed");
    await assert.rejects(c.ping(), (e) => e.code === ClientErrorCodes.CLOSED);
  });
});

describe("tokens", { timeout: 60000 }, () => {
  test("getToken supplies the connect token and refreshes it before it expires, on the same session", async (t) => {
    const issued = [];
    const getToken = async () => {
      const token = mintToken("carol", { ttl: 2 + issued.length });
      issued.push(JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp);
      return token;
    };
    const c = client(t, dev.ws, { getToken, refreshBefore: 60000 });
    const errors = [];
    c.on("error", (e) => errors.push(e.message));
    await c.ready();
    assert.equal(c.user, "carol");
    const session = c.session;
    // A token living 2 s is refreshed half-way, about 1 s in.
    await waitFor("a refreshed expiry", () => {
      if (errors.length) throw new Error(errors.join("; "));
      return issued.length >= 2 && issued.slice(1).includes(c.expiresAt);
    });
    assert.equal(c.session, session);
    assert.equal(c.state, "connected");
  });
});

describe("tables", { timeout: 60000 }, () => {
  test("the close code table matches docs/protocol.md, and unknown codes follow the ranges", () => {
    const doc = readFileSync(path.join(ROOT, "docs/protocol.md"), "utf8");
    const rows = [...doc.matchAll(/^\| (\d{4}) \| ([^|]+) \| (yes|no) \|/gm)].map((m) => ({
      code: Number(m[1]),
      reason: m[2].trim(),
      reconnect: m[3] === "yes",
    }));
    assert.deepEqual(CLOSE_CODES, rows);
    for (const [code, yes] of [[4321, true], [4999, false], [1006, true], [1011, true], [1005, false]]) {
      assert.equal(shouldReconnect(code), yes, String(code));
    }
  });
});
