// Test kit for the SDK and browser tests: spawns real `switchboard` and `nats-server`
// processes on free ports, mints connect tokens, cuts links with a TCP proxy, and waits for
// conditions with deadlines (never fixed sleeps).

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
export const SECRET = "sdk-test-secret";
/** How long any one condition may take before a test fails. */
export const DEADLINE_MS = 15000;

/** The switchboard binary: $SWITCHBOARD_BIN, or target/debug/switchboard (cargo build -p switchboard). */
export function switchboardBin() {
  const bin = process.env.SWITCHBOARD_BIN || path.join(ROOT, "target/debug/switchboard");
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run \`cargo build -p switchboard\` first`);
  return bin;
}

/** Temporary folders the tests made, removed when the test process exits. */
const dirs = new Set();
process.on("exit", () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix = "sb-js-") {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

/** Writes `text` to a fresh temporary file and returns its path. */
export function tempFile(name, text) {
  const file = path.join(tempDir(), name);
  writeFileSync(file, text);
  return file;
}

/** Waits until `cond()` (sync or async) is truthy, polling; fails after `ms` saying `what` (or what `what()` says then). */
export async function waitFor(what, cond, ms = DEADLINE_MS) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await cond();
      if (last) return last;
    } catch (e) {
      if (e.fatal) throw e; // Waiting longer cannot help (a process exited).
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what} (last: ${last})`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Every process a test started: killed when the test process exits, however it exits. */
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => process.exit(128 + (signal === "SIGINT" ? 2 : 15)));

/** A spawned process whose output is kept; `addr` comes from a line its stdout prints. */
export class Proc {
  constructor(name, program, args, env = {}) {
    this.name = name;
    this.program = program;
    this.args = args;
    this.env = env;
    this.output = "";
    this.start();
  }

  start() {
    this.exited = false;
    this.child = spawn(this.program, this.args, {
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn", ...this.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const keep = (d) => {
      this.output += d.toString();
      if (this.output.length > 200000) this.output = this.output.slice(-100000);
    };
    this.child.stdout.on("data", keep);
    this.child.stderr.on("data", keep);
    const child = this.child;
    running.add(child);
    // A process left running must not keep a finished (or failed) test file alive: the exit
    // handler above kills it.
    child.unref();
    child.stdout.unref?.();
    child.stderr.unref?.();
    this.exit = new Promise((resolve) =>
      child.on("exit", (code, signal) => {
        running.delete(child);
        this.exited = true;
        resolve({ code, signal });
      }),
    );
  }

  /** Waits until the output matches `re`; returns the match. */
  async waitOutput(re, what, ms = DEADLINE_MS) {
    return waitFor(`${this.name}: ${what}`, () => {
      if (this.exited) throw Object.assign(new Error(`${this.name} exited`), { fatal: true });
      return this.output.match(re);
    }, ms).catch((e) => {
      throw new Error(`${e.message}\n--- output of ${this.name} ---\n${this.output}`);
    });
  }

  async kill(signal = "SIGKILL") {
    if (this.exited) return;
    this.child.kill(signal);
    await this.exit;
  }
}

/** Kills every process started through `procs` when the test ends. */
export function cleanup(t, ...procs) {
  t.after(async () => {
    for (const p of procs.flat()) await p.kill();
  });
}

/**
 * `switchboard dev` on free ports (`--listen 127.0.0.1:0`; the banner says where), with
 * `config` (TOML text) and extra flags. Resolves to `{proc, ws, http}`.
 */
export async function startDev(config = "", extra = []) {
  const args = ["dev", "--listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--token-secret", SECRET, ...extra];
  if (config) args.push("--config", tempFile("dev.toml", config));
  const proc = new Proc("switchboard dev", switchboardBin(), args);
  const m = await proc.waitOutput(/websocket: (ws:\/\/[^\s]+)/, "the banner");
  const ws = m[1];
  return { proc, ws, http: ws.replace(/^ws/, "http").replace(/\/ws$/, "") };
}

/** An HS256 JWT for `user`, valid `ttl` seconds, with extra claims. */
export function mintToken(user, { ttl = 3600, secret = SECRET, ...claims } = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: user, exp: Math.floor(Date.now() / 1000) + ttl, ...claims })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/**
 * A TCP proxy in front of `target` ("host:port") that a test can cut: `cut()` resets every
 * link and refuses new ones (a network that went away), `blackhole()` keeps links open but
 * forwards nothing (a dead link no one closed), `restore()` forwards again.
 */
export class Proxy {
  static async start(target) {
    const p = new Proxy(target);
    await new Promise((r) => p.server.listen(0, "127.0.0.1", r));
    p.port = p.server.address().port;
    return p;
  }

  constructor(target) {
    const [host, port] = target.split(":");
    this.mode = "pass";
    this.links = new Set();
    this.server = net.createServer((client) => {
      if (this.mode === "cut") return client.resetAndDestroy();
      const upstream = net.connect(Number(port), host);
      const link = { client, upstream };
      this.links.add(link);
      const end = () => {
        this.links.delete(link);
        client.destroy();
        upstream.destroy();
      };
      client.on("data", (d) => this.mode === "pass" && upstream.write(d));
      upstream.on("data", (d) => this.mode === "pass" && client.write(d));
      client.on("error", end).on("close", end);
      upstream.on("error", end).on("close", end);
    });
  }

  url(path = "/ws") {
    return `ws://127.0.0.1:${this.port}${path}`;
  }

  cut() {
    this.mode = "cut";
    for (const { client, upstream } of this.links) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    this.links.clear();
  }

  blackhole() {
    this.mode = "blackhole";
  }

  restore() {
    this.mode = "pass";
  }

  close() {
    this.cut();
    this.server.close();
  }
}
