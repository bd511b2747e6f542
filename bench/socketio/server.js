// The Socket.IO peer of `switchboard bench`: one process of a Socket.IO 4.8 cluster whose
// processes share rooms through Redis. bench/suite.py starts two of them.
//
//   node server.js PORT REDIS_URL [pubsub|streams]
//
// `pubsub` (the default) joins the processes with @socket.io/redis-adapter (Redis Pub/Sub):
// what most deployments run, and what every scenario but `jitter` measures. `streams` joins
// them with @socket.io/redis-streams-adapter (Redis Streams) and turns on connection state
// recovery, which the Pub/Sub adapter does not support: a client that comes back within
// two minutes with its session's private id and the offset of the last event it received
// (`40{"pid":…,"offset":…}`) gets its rooms back and the events it missed. The `jitter`
// scenario runs against this mode.
//
// A client joins a room with `sub` (acknowledged once joined) and publishes with
// `pub(room, data)`, which emits `m` with the data to every member of the room in every
// process. Only the WebSocket transport is offered, as the generator speaks nothing else.
const http = require("node:http");
const { Server } = require("socket.io");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const redisUrl = process.argv[3] || "redis://127.0.0.1:6379";
const mode = process.argv[4] || "pubsub";

async function adapter() {
  if (mode === "streams") {
    const { createAdapter } = require("@socket.io/redis-streams-adapter");
    const client = createClient({ url: redisUrl });
    await client.connect();
    return { adapter: createAdapter(client) };
  }
  if (mode !== "pubsub") {
    throw new Error(`unknown mode ${mode}: pubsub or streams`);
  }
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  return { adapter: createAdapter(pub, sub) };
}

async function main() {
  const options = await adapter();
  if (mode === "streams") {
    // Socket.IO's documented defaults: sessions and missed packets kept two minutes.
    options.connectionStateRecovery = { maxDisconnectionDuration: 2 * 60 * 1000, skipMiddlewares: true };
  }
  const server = http.createServer((req, res) => {
    res.writeHead(404).end();
  });
  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    ...options,
  });
  io.on("connection", (socket) => {
    socket.on("sub", (room, ack) => {
      socket.join(String(room));
      if (typeof ack === "function") ack(true);
    });
    socket.on("pub", (room, data) => {
      io.to(String(room)).emit("m", data);
    });
  });
  // io.listen(port) would bind every interface; the benchmark stays on loopback.
  server.listen(port, "127.0.0.1", () => {
    console.log(`socket.io listening on 127.0.0.1:${port} (pid ${process.pid}, redis ${redisUrl}, ${mode})`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
