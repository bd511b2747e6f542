// A local cluster for the browser tests: a NATS cluster (JetStream), one control replica and
// gateways, all real processes on free loopback ports, killed when the test ends.

import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

import { Proc, SECRET, switchboardBin, tempDir, waitFor } from "./harness.mjs";

const API_KEY = "browser-test-key";

/** The nats-server binary: $NATS_SERVER, or the one on PATH (tests/tools/install-deps.sh installs it). */
export function natsServerBin() {
  if (process.env.NATS_SERVER) return process.env.NATS_SERVER;
  try {
    return execFileSync("sh", ["-c", "command -v nats-server"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("nats-server is missing: run tests/tools/install-deps.sh (apt-get install nats-server)");
  }
}

/** A loopback port nothing listens on right now. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

async function httpStatus(url) {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

export class Cluster {
  gateways = [];

  /** `natsNodes` NATS nodes in one cluster, a control replica, gateways serving the page. */
  static async start(options = {}) {
    const c = new Cluster();
    try {
      await c.boot(options);
    } catch (e) {
      await c.stop();
      throw e;
    }
    return c;
  }

  async boot({ natsNodes = 2, config = "" }) {
    const c = this;
    c.dir = tempDir("sb-cluster-");
    c.configFile = path.join(c.dir, "switchboard.toml");
    writeFileSync(c.configFile, config);
    const ports = [];
    for (let i = 0; i < natsNodes; i++) ports.push({ client: await freePort(), route: await freePort() });
    const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`).join(", ");
    c.nats = ports.map((p, i) => {
      const dir = path.join(c.dir, `nats-${i}`);
      mkdirSync(dir);
      const conf = path.join(dir, "nats.conf");
      writeFileSync(
        conf,
        `server_name: "n${i}"\nhost: "127.0.0.1"\nport: ${p.client}\njetstream { store_dir: "${dir}/js" }\n` +
          `cluster { name: sb, listen: "127.0.0.1:${p.route}", routes: [${routes}] }\n`,
      );
      return new Proc(`nats-${i}`, natsServerBin(), ["-c", conf]);
    });
    c.natsUrls = ports.map((p) => `nats://127.0.0.1:${p.client}`);
    for (const n of c.nats) await n.waitOutput(/Server is ready/, "ready");
    // JetStream needs the cluster's meta leader before streams can be made.
    for (const n of c.nats) await n.waitOutput(/JetStream cluster new metadata leader|Self is new JetStream cluster metadata leader/, "a JetStream meta leader");
    c.control = new Proc("control", switchboardBin(), [
      "control", "--nats", c.natsUrls.join(","), "--grpc-listen", "127.0.0.1:0",
      "--replica-id", "c1", "--api-keys", API_KEY, "--config", c.configFile,
    ]);
    await c.control.waitOutput(/serving gRPC on/, "the gRPC banner");
  }

  /** Starts a gateway on NATS node `natsIndex` (and `port`, when given; else a free one). */
  async gateway(id, natsIndex, port) {
    const args = [
      "gateway", "--nats", this.natsUrls[natsIndex], "--listen", `127.0.0.1:${port ?? 0}`,
      "--node-id", id, "--token-secret", SECRET, "--page", "--config", this.configFile,
    ];
    const proc = new Proc(id, switchboardBin(), args);
    const m = await proc.waitOutput(/listening on (http:\/\/[^\s]+)/, "the listen banner");
    const gw = { id, natsIndex, proc, http: m[1], port: Number(new URL(m[1]).port) };
    await waitFor(`${id} to be ready`, async () => (await httpStatus(`${gw.http}/readyz`)) === 200);
    this.gateways.push(gw);
    return gw;
  }

  /** Kills gateway `gw` at once (SIGKILL: its sockets drop without a close frame). */
  async killGateway(gw) {
    await gw.proc.kill("SIGKILL");
  }

  /** Starts `gw` again on the same port and NATS node. */
  async restartGateway(gw) {
    const again = await this.gateway(gw.id, gw.natsIndex, gw.port);
    this.gateways = this.gateways.filter((g) => g !== again);
    Object.assign(gw, again);
    return gw;
  }

  async stop() {
    for (const g of this.gateways) await g.proc.kill();
    this.gateways = [];
    await this.control?.kill();
    for (const n of this.nats ?? []) await n.kill();
  }

  logs() {
    return [...this.gateways.map((g) => g.proc), this.control, ...this.nats]
      .filter(Boolean)
      .map((p) => `--- ${p.name} ---\n${p.output.slice(-4000)}`)
      .join("\n");
  }
}
