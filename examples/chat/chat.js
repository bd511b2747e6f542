// The chat example: rooms, nicknames, a presence list, history on join and typing
// indicators, on the Switchboard JS SDK (clients/js; the gateway serves its build at
// /chat/sdk/). Channels: `chat:ROOM` (history, presence, join/leave) and `typing:ROOM`
// (live-only); examples/chat/switchboard.toml configures both namespaces.
//
// URL: /chat/?room=ROOM&nick=NAME. The nickname becomes the token's user through the dev
// server's /demo/token (`switchboard dev --demo-tokens`); a token given as `#token=…` is used
// instead (a real app gets it from its backend). Without either, the session is anonymous
// and the nickname travels only inside messages. SDK options such as `maxReconnectDelay`
// may be given as URL parameters too (the browser tests use them).

import { connect } from "./sdk/index.js";

const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const $ = (id) => document.getElementById(id);
const NAME = /^[A-Za-z0-9_-]{1,32}$/;
const ROOM = /^[A-Za-z0-9_-]{1,64}$/;
const TYPING_EVERY_MS = 2000;
const TYPING_SHOWN_MS = 3000;

/** What the page holds; on `window.chat` for the browser tests and the curious. */
const chat = {
  nick: "",
  room: "",
  client: null,
  sub: null,
  /** The offsets of the publications the SDK delivered, in delivery order. */
  deliveries: [],
  /** Every `onSubscribed` event of the room's subscription. */
  subscribed: [],
  members: new Map(),
  typers: new Map(),
};
window.chat = chat;

function tokenClaims(token) {
  try {
    return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  } catch {
    return {};
  }
}

async function demoToken(nick) {
  const given = fragment.get("token");
  if (given) return given;
  const r = await fetch(`/demo/token?user=${encodeURIComponent(nick)}`);
  if (r.status === 404) return ""; // No demo tokens here: an anonymous session.
  if (!r.ok) throw new Error(`/demo/token answered ${r.status}`);
  return (await r.json()).token;
}

function setStatus(state, text) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = text;
}

function notice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  $("messages").append(li);
}

/** Shows a publication once, in offset order (history and live ones meet here). */
function show(pub) {
  const list = $("messages");
  const offset = pub.offset ?? Number.MAX_SAFE_INTEGER;
  if (pub.offset !== undefined && list.querySelector(`li[data-offset="${pub.offset}"]`)) return;
  const data = pub.data ?? {};
  const li = document.createElement("li");
  if (pub.offset !== undefined) li.dataset.offset = String(pub.offset);
  const who = document.createElement("b");
  who.textContent = String(data.nick ?? "?");
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = String(data.text ?? "");
  li.append(who, text);
  const later = [...list.querySelectorAll("li[data-offset]")].find((el) => Number(el.dataset.offset) > offset);
  list.insertBefore(li, later ?? null);
  if (!later) list.scrollTop = list.scrollHeight;
}

function renderPresence() {
  const names = new Map();
  for (const c of chat.members.values()) {
    const name = String(c.info?.name ?? (c.user || "anonymous"));
    names.set(name, (names.get(name) ?? 0) + 1);
  }
  const ul = $("presence");
  ul.replaceChildren(
    ...[...names.entries()].sort().map(([name, n]) => {
      const li = document.createElement("li");
      li.textContent = name + (n > 1 ? ` (${n} tabs)` : "") + (name === chat.nick ? " (you)" : "");
      return li;
    }),
  );
}

function renderTyping() {
  const now = Date.now();
  for (const [nick, until] of chat.typers) if (until <= now) chat.typers.delete(nick);
  const who = [...chat.typers.keys()];
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

/** The join and leave pushes seen while each `presence` request is out. */
const presenceLogs = new Set();

function joined(kind, c) {
  for (const log of presenceLogs) log.push([kind, c]);
  if (kind === "join") chat.members.set(c.session, c);
  else chat.members.delete(c.session);
  renderPresence();
}

/** Asks who is here; the pushes that came meanwhile are newer than the answer, so they are
 * applied on top of it (the answer may not even list this session yet). */
async function refreshPresence() {
  const log = [];
  presenceLogs.add(log);
  let clients;
  try {
    clients = await chat.sub.presence();
  } catch (e) {
    $("presence").textContent = `(no presence: ${e.message})`;
    return;
  } finally {
    presenceLogs.delete(log);
  }
  const members = new Map(clients.map((c) => [c.session, c]));
  for (const [kind, c] of log) {
    if (kind === "join") members.set(c.session, c);
    else members.delete(c.session);
  }
  chat.members = members;
  renderPresence();
}

async function loadHistory() {
  try {
    const h = await chat.sub.history({ limit: 50, reverse: true });
    for (const pub of h.publications.reverse()) show(pub);
  } catch (e) {
    notice(`no history: ${e.message}`);
  }
}

function renderRooms() {
  const rooms = [...new Set(["lobby", "random", chat.room])];
  $("rooms").replaceChildren(
    ...rooms.map((room) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      const q = new URLSearchParams(params);
      q.set("room", room);
      a.href = `?${q}${location.hash}`;
      a.textContent = `#${room}`;
      a.setAttribute("aria-current", String(room === chat.room));
      li.append(a);
      return li;
    }),
  );
}

async function start(nick, room) {
  chat.nick = nick;
  chat.room = room;
  $("chat").hidden = false;
  $("room-title").textContent = `#${room}`;
  renderRooms();
  const options = {};
  for (const k of ["minReconnectDelay", "maxReconnectDelay", "pingInterval", "pingTimeout", "timeout"]) {
    if (params.has(k)) options[k] = Number(params.get(k));
  }
  setStatus("connecting", "getting a token…");
  const token = await demoToken(nick).catch((e) => {
    notice(`no token (${e.message}); joining anonymously`);
    return "";
  });
  if (token) {
    options.token = token;
    options.getToken = () => demoToken(nick);
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const client = connect(`${scheme}//${location.host}/ws`, { ...options, name: "switchboard-chat" });
  chat.client = client;
  client.on("connecting", () => setStatus("connecting", "connecting…"));
  client.on("connected", (ev) => setStatus("connected", `connected as ${ev.user || `${nick} (anonymous)`} · ${ev.session}`));
  client.on("disconnected", (ev) => {
    const why = `close ${ev.code}${ev.reason ? ` ${ev.reason}` : ""}`;
    if (ev.reconnect) setStatus("disconnected", `reconnecting in ${(ev.delay / 1000).toFixed(1)} s (${why})`);
    else setStatus("closed", `disconnected for good (${why}); reload to try again`);
  });
  client.on("error", (e) => console.warn("switchboard:", e.message));

  chat.sub = client.subscribe(`chat:${room}`, {
    onPublication: (pub) => {
      chat.deliveries.push(pub.offset);
      chat.typers.delete(String(pub.data?.nick));
      renderTyping();
      show(pub);
    },
    onSubscribed: (ev) => {
      chat.subscribed.push(ev);
      if (ev.resumed && !ev.recovered) {
        notice("you were away too long to catch up: reloaded the latest messages");
        $("messages").replaceChildren();
      }
      if (!ev.resumed || !ev.recovered) void loadHistory();
      void refreshPresence(); // Join and leave are not recovered: ask again.
    },
    onJoin: (c) => joined("join", c),
    onLeave: (c) => joined("leave", c),
    onError: (e) => notice(`cannot join #${room}: ${e.message}`),
  });
  client.subscribe(`typing:${room}`, {
    onPublication: (pub) => {
      const who = String(pub.data?.nick ?? "");
      if (!who || who === nick) return;
      chat.typers.set(who, Date.now() + TYPING_SHOWN_MS);
      renderTyping();
      setTimeout(renderTyping, TYPING_SHOWN_MS + 50);
    },
  });

  let lastTyping = 0;
  let typingAllowed = true;
  $("text").addEventListener("input", () => {
    const now = Date.now();
    if (!typingAllowed || now - lastTyping < TYPING_EVERY_MS || client.state !== "connected") return;
    lastTyping = now;
    client.publish(`typing:${room}`, { nick }).catch((e) => {
      if (!e.temporary) typingAllowed = false; // The namespace does not allow client publish.
    });
  });
  $("send-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("text");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    lastTyping = 0;
    chat.sub.publish({ nick, text }).catch((e) => notice(`not sent (${e.message}): ${text}`));
  });
  $("room-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const next = $("new-room").value.trim();
    if (!ROOM.test(next)) return;
    const q = new URLSearchParams(params);
    q.set("room", next);
    location.search = q.toString();
  });
}

const fromToken = fragment.get("token") ? tokenClaims(fragment.get("token")) : {};
// A nickname in the token or the URL joins at once; otherwise the form asks (each tab may
// be someone else, so a remembered nickname is only a suggestion).
const nick = String(fromToken.info?.name ?? fromToken.sub ?? params.get("nick") ?? "");
const room = params.get("room") ?? "lobby";
if (NAME.test(nick) && ROOM.test(room)) {
  localStorage.setItem("switchboard-chat-nick", nick);
  void start(nick, room);
} else {
  const form = $("join");
  form.hidden = false;
  $("nick").value = nick || (localStorage.getItem("switchboard-chat-nick") ?? "");
  $("room").value = ROOM.test(room) ? room : "lobby";
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams(params);
    q.set("nick", $("nick").value.trim());
    q.set("room", $("room").value.trim());
    location.search = q.toString();
  });
}
