// The Socket.IO peer of `switchboard bench`: one process of a Socket.IO 4.8 cluster whose
// processes share rooms through @socket.io/redis-adapter. bench/suite.py starts two of them.
//
//   node server.js PORT REDIS_URL
//
// A client joins a room with `sub` (acknowledged once joined) and publishes with
// `pub(room, data)`, which emits `m` with the data to every member of the room in every
// process. Only the WebSocket transport is offered, as the generator speaks nothing else.
const http = require("node:http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const redisUrl = process.argv[3] || "redis://127.0.0.1:6379";

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const server = http.createServer((req, res) => {
    res.writeHead(404).end();
  });
  const io = new Server(server, {
    transports: ["websocket"],
    serveClient: false,
    adapter: createAdapter(pub, sub),
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
    console.log(`socket.io listening on 127.0.0.1:${port} (pid ${process.pid}, redis ${redisUrl})`);
  });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
