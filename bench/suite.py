#!/usr/bin/env python3
"""The benchmark suite behind `make bench` and `make bench-quick`.

Starts each system under test on loopback free ports, pinned to one CPU with taskset, runs
`switchboard bench` pinned to another CPU against it, keeps every JSON report under
bench/results/, and (full suite) writes docs/performance.md from them.

Systems: switchboard-dev (`switchboard dev`), switchboard-cluster (nats-server, one
`switchboard control`, two `switchboard gateway`), nats-ws (NATS's own WebSocket listener),
socketio (two Socket.IO 4.8 processes joined by @socket.io/redis-adapter on redis-server),
floor (`bench-floor`, the minimal broadcaster of crates/switchboard-bench/src/bin/bench-floor.rs:
what any design can reach on this machine).
Each run gets freshly started processes, so memory figures do not inherit an earlier run's
heap. Python 3 standard library only.

    bench/suite.py --quick            # ~1 minute: switchboard-dev, broadcast and idle
    bench/suite.py                    # ~15 minutes: every system and scenario, writes the doc
    bench/suite.py --systems nats-ws,socketio --out /tmp/perf.md
    bench/suite.py --systems switchboard-cluster,floor --only ladder --out /tmp/perf.md
    bench/suite.py --only jitter      # ~2 minutes: the jitter runs alone; rewrites only the doc's Jitter section

The jitter scenario (`switchboard bench jitter`) runs against switchboard-cluster-history,
socketio-recovery (the socketio system with @socket.io/redis-streams-adapter and connection state
recovery on) and nats-ws.
"""

import argparse
import datetime
import json
import os
import shlex
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")



def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rel(text):
    """Paths under the repository, written relative to it (commands read the same anywhere)."""
    return text.replace(ROOT + os.sep, "")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Proc:
    """A server process pinned with taskset, its output in a log file."""

    def __init__(self, name, cmd, cpus, logdir, cwd=ROOT):
        self.name = name
        self.cmd = cmd
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.logf = open(self.log_path, "w")
        full = (["taskset", "-c", cpus] if cpus else []) + cmd
        self.shown = rel(" ".join(shlex.quote(c) for c in full))
        # taskset execs the command, so the child's pid is the server's pid.
        self.popen = subprocess.Popen(full, stdout=self.logf, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def tail(self):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-15:])
        except OSError:
            return ""

    def stop(self):
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.logf.close()


def wait_port(port, procs, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited:\n{p.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class System:
    def __init__(self, label, target):
        self.label = label
        self.target = target
        self.procs = []
        self.urls = []
        self.grpc = None
        self.nats = None
        self.flags = []  # generator flags of the system (the channel's namespace)
        self.scratch = []  # directories removed when the system stops

    def start(self, name, cmd, cpus, logdir, cwd=ROOT):
        p = Proc(name, cmd, cpus, logdir, cwd)
        self.procs.append(p)
        return p

    def pids(self):
        return [p.pid for p in self.procs]

    def commands(self):
        return [p.shown for p in self.procs]

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        for d in self.scratch:
            shutil.rmtree(d, ignore_errors=True)


def nats_config(logdir, jetstream=None):
    """bench/nats-ws.conf on free ports; with `jetstream` (a store directory), JetStream on."""
    ports = {"nats_port": free_port(), "monitor_port": free_port(), "ws_port": free_port()}
    with open(os.path.join(BENCH, "nats-ws.conf")) as f:
        text = f.read()
    for k, v in ports.items():
        text = text.replace("{" + k + "}", str(v))
    if jetstream:
        text += f'\njetstream {{\n  store_dir: "{jetstream}"\n}}\n'
    path = os.path.join(logdir, "nats.conf")
    with open(path, "w") as f:
        f.write(text)
    return path, ports


# The benchmark measures the delivery path from a few loopback addresses, as fast as it can:
# the limits per client address and per session would measure themselves instead.
NO_CLIENT_LIMITS = ["--max-connections-per-ip", "0", "--connect-rate-per-ip", "0",
                    "--max-messages-per-sec", "0", "--max-bytes-per-sec", "0"]


# Switchboard systems run twice: on a channel of a live-only namespace (the generator's default,
# `bench:…`) and, as the system's `-history` variant, on a channel of a namespace with history
# (`hist:…`). Both read the same configuration file, so only the channel's namespace differs.
HISTORY_NAMESPACE = "hist"
HISTORY_SIZE = 1000
HISTORY = {"switchboard-dev": "switchboard-dev-history", "switchboard-cluster": "switchboard-cluster-history"}
BASE = {v: k for k, v in HISTORY.items()}


def switchboard_config(logdir):
    path = os.path.join(logdir, "switchboard.toml")
    with open(path, "w") as f:
        f.write("# Written by bench/suite.py: one namespace with history; every other one (the generator's\n"
                "# default, `bench`) is live-only.\n"
                f"[channels.namespaces.{HISTORY_NAMESPACE}]\nhistory_size = {HISTORY_SIZE}\n\n"
                "[nats]\nhistory_replicas = 1\n")
    return path


def start_system(name, binary, cpus, logdir):
    if name in BASE:
        s = start_system(BASE[name], binary, cpus, logdir)
        s.label = name
        s.flags = ["--namespace", HISTORY_NAMESPACE]
        return s
    if name == "switchboard-dev":
        s = System(name, "switchboard")
        http, grpc = free_port(), free_port()
        conf = switchboard_config(logdir)
        p = s.start("switchboard-dev", [binary, "dev", "--config", conf, "--listen", f"127.0.0.1:{http}", "--grpc-listen",
                                        f"127.0.0.1:{grpc}", "--no-page", "--max-connections", "200000",
                                        *NO_CLIENT_LIMITS, "--log", "warn"], cpus, logdir)
        wait_port(http, [p])
        wait_port(grpc, [p])
        s.urls = [f"ws://127.0.0.1:{http}/ws"]
        s.grpc = f"http://127.0.0.1:{grpc}"
        return s
    if name == "switchboard-cluster":
        s = System(name, "switchboard")
        store = tempfile.mkdtemp(prefix="sb-bench-js-")
        s.scratch.append(store)
        conf, ports = nats_config(logdir, jetstream=store)
        nats = s.start("nats-server", ["nats-server", "-c", conf], cpus, logdir)
        wait_port(ports["nats_port"], [nats])
        url = f"nats://127.0.0.1:{ports['nats_port']}"
        sbconf = switchboard_config(logdir)
        grpc = free_port()
        control = s.start("control", [binary, "control", "--config", sbconf, "--nats", url, "--grpc-listen", f"127.0.0.1:{grpc}",
                                      "--replica-id", "c1", "--allow-unauthenticated-api", "--log", "warn"], cpus, logdir)
        gateways = []
        for i in (1, 2):
            port = free_port()
            g = s.start(f"gateway-g{i}", [binary, "gateway", "--config", sbconf, "--allow-anonymous", "--nats", url,
                                          "--listen", f"127.0.0.1:{port}",
                                          "--node-id", f"g{i}", "--max-connections", "200000",
                                          *NO_CLIENT_LIMITS, "--log", "warn"],
                        cpus, logdir)
            gateways.append((g, port))
        wait_port(grpc, [control])
        for g, port in gateways:
            wait_port(port, [g])
            s.urls.append(f"ws://127.0.0.1:{port}/ws")
        s.grpc = f"http://127.0.0.1:{grpc}"
        time.sleep(1.0)  # let the control replica see both gateways' heartbeats
        return s
    if name == "nats-ws":
        s = System(name, "nats-ws")
        conf, ports = nats_config(logdir)
        nats = s.start("nats-server", ["nats-server", "-c", conf], cpus, logdir)
        wait_port(ports["nats_port"], [nats])
        wait_port(ports["ws_port"], [nats])
        s.urls = [f"ws://127.0.0.1:{ports['ws_port']}"]
        s.nats = f"nats://127.0.0.1:{ports['nats_port']}"
        return s
    if name == "floor":
        s = System(name, "floor")
        port = free_port()
        floor = os.path.join(os.path.dirname(binary), "bench-floor")
        p = s.start("bench-floor", [floor, "--listen", f"127.0.0.1:{port}"], cpus, logdir)
        wait_port(port, [p])
        s.urls = [f"ws://127.0.0.1:{port}/"]
        return s
    if name in ("socketio", "socketio-recovery"):
        # socketio-recovery: the Redis Streams adapter with connection state recovery on (the
        # Pub/Sub adapter of `socketio` does not support recovery); see bench/socketio/server.js.
        mode = "streams" if name == "socketio-recovery" else "pubsub"
        s = System(name, "socketio")
        rport = free_port()
        redis = s.start("redis-server", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                         "--appendonly", "no"], cpus, logdir)
        wait_port(rport, [redis])
        for i in (1, 2):
            port = free_port()
            node = s.start(f"socketio-{i}", ["node", os.path.join(BENCH, "socketio", "server.js"), str(port),
                                             f"redis://127.0.0.1:{rport}", mode], cpus, logdir, cwd=BENCH)
            wait_port(port, [node])
            s.urls.append(f"ws://127.0.0.1:{port}")
        return s
    raise ValueError(f"unknown system {name}")


class Runner:
    def __init__(self, args, outdir=None):
        self.args = args
        self.date = datetime.datetime.now(datetime.timezone.utc)
        self.binary = args.bin
        self.results = []
        ncpu = os.cpu_count() or 1
        if ncpu >= 2 and not args.no_pin:
            self.server_cpus, self.generator_cpus = "0", "1"
        else:
            self.server_cpus, self.generator_cpus = None, None
        if outdir is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            outdir = os.path.join(args.results, ("quick-" if args.quick else "full-") + stamp)
        self.outdir = outdir
        os.makedirs(self.outdir, exist_ok=True)

    def run(self, system_name, scenario, flags, tag):
        """Starts the system fresh, runs one bench, stops the system. Returns the report
        (None when `--only` leaves this run out)."""
        if self.args.only and not tag.startswith(tuple(self.args.only.split(","))):
            return None
        logdir = os.path.join(self.outdir, f"{tag}-{system_name}")
        os.makedirs(logdir, exist_ok=True)
        entry = {"system": system_name, "scenario": scenario, "tag": tag, "flags": flags}
        try:
            system = start_system(system_name, self.binary, self.server_cpus, logdir)
        except Exception as e:  # noqa: BLE001 - any start failure is reported, the suite goes on
            entry["error"] = f"could not start: {e}"
            log(f"  {tag:<24} {system_name:<20} NOT RUN: {str(e).splitlines()[0]}")
            self.results.append(entry)
            return entry
        json_path = os.path.join(self.outdir, f"{tag}-{system_name}.json")
        cmd = ([] if not self.generator_cpus else ["taskset", "-c", self.generator_cpus]) + [
            self.binary, "bench", scenario, "--target", system.target, "--url", ",".join(system.urls),
            "--server-pid", ",".join(str(p) for p in system.pids()), "--label", system_name,
            "--sources", "8", "--json", json_path, "--quiet"]
        if system.grpc:
            cmd += ["--grpc", system.grpc]
        if system.nats:
            cmd += ["--nats", system.nats]
        cmd += system.flags + flags
        entry["command"] = rel(" ".join(shlex.quote(c) for c in cmd))
        entry["servers"] = system.commands()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            entry["stdout"] = out.stdout
            if out.returncode != 0:
                entry["error"] = f"bench exited {out.returncode}: {out.stderr.strip()[-500:]}"
            else:
                with open(json_path) as f:
                    entry["report"] = json.load(f)
        except subprocess.TimeoutExpired:
            entry["error"] = "bench timed out after 600 s"
        finally:
            system.stop()
        self.results.append(entry)
        log("  " + summary(entry))
        return entry


def summary(e):
    head = f"{e['tag']:<24} {e['system']:<20}"
    if "error" in e:
        return f"{head} ERROR {e['error'].splitlines()[0] if e['error'] else ''}"
    r = e["report"]
    l = r["latency_ms"]
    if r.get("jitter"):
        j = r["jitter"]
        return (f"{head} clients {j['clients']:>4}  delivery {j['delivery_pct']:.2f}% (per client min "
                f"{j['delivery_pct_per_client']['min']:.2f}%)  lost/dup/reord {r['lost']}/{r['duplicated']}/"
                f"{r['reordered']}  cuts {j['cuts']}  not recovered {j['not_recovered']}  reconnect p99 "
                f"{j['reconnect_ms']['p99']:.1f} ms")
    rss = r.get("server_rss_bytes_per_connection")
    cpu = r.get("server_cpu_us_per_delivery")
    return (f"{head} conns {r['connections']:>6}  {r['deliveries_per_sec']:>10.0f} deliveries/s  "
            f"p50 {l['p50']:.1f} p99 {l['p99']:.1f} ms  lost/dup/reord {r['lost']}/{r['duplicated']}/{r['reordered']}  "
            f"RSS/conn {fmt_kib(rss)}  CPU/delivery {fmt(cpu, 2, ' µs')}  gen {r['generator_cpu_fraction'] * 100:.0f}%")


def fmt(v, digits=1, unit=""):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{unit}"


def fmt_kib(b):
    return "–" if b is None else f"{b / 1024:.2f} KiB"


def ok(e):
    return "report" in e


def clean(r):
    return r["lost"] == 0 and r["duplicated"] == 0 and r["reordered"] == 0


# === the suites ===

def quick(runner):
    broadcast = runner.run("switchboard-dev", "broadcast",
                           ["--subscribers", "1000", "--rate", "100", "--duration", "10s", "--payload", "100"],
                           "broadcast-1000x100")
    idle = runner.run("switchboard-dev", "idle", ["--subscribers", "2000", "--duration", "3s"], "idle-2000")
    for e in (broadcast, idle):
        if "stdout" in e:
            print(e["stdout"])
    failures = []
    for e in (broadcast, idle):
        if not ok(e):
            failures.append(f"{e['tag']}: {e.get('error')}")
            continue
        r = e["report"]
        if r["connect_failures"]:
            failures.append(f"{e['tag']}: {r['connect_failures']} connections failed")
        if not clean(r) and not r["slow_consumer_disconnects"]:
            failures.append(f"{e['tag']}: lost {r['lost']}, duplicated {r['duplicated']}, reordered {r['reordered']}")
    if ok(broadcast) and broadcast["report"]["deliveries"] == 0:
        failures.append("broadcast delivered nothing")
    print(f"results in {os.path.relpath(runner.outdir, ROOT)}")
    if failures:
        print("bench-quick FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("bench-quick passed: no connection failed, nothing lost, duplicated or reordered")
    return 0


SUBSCRIBERS = 5000
IDLE = 18000
LADDER = [100, 200, 400, 800]  # publications/s; x 5,000 subscribers = 0.5M .. 4M deliveries/s
# Ladder publishers, each its own sequence: a gRPC publisher waits for each answer before the
# next call, so one alone cannot offer 800/s to a busy server; four can, for every system.
LADDER_PUBLISHERS = 4


ORDERED_SUBSCRIBERS = 100
ORDERED_TAG = f"ordered-stream-{ORDERED_SUBSCRIBERS}"


def full(runner, systems):
    done = set()
    for name in systems:
        if name in done:
            continue
        # A system and its history variant take turns, run by run, so that each pair of runs
        # compared (history against live-only) met the same machine.
        group = [name] + [v for v in (HISTORY.get(name),) if v in systems]
        done.update(group)
        log(f"{', '.join(group)}:")
        if name not in BASE:
            runner.run(name, "idle", ["--subscribers", str(IDLE), "--duration", "5s"], f"idle-{IDLE}")
        for rate in (1, 10, 50):
            for s in group:
                runner.run(s, "broadcast", ["--subscribers", str(SUBSCRIBERS), "--rate", str(rate), "--duration", "10s",
                                            "--payload", "100"], f"broadcast-{SUBSCRIBERS}x{rate}")
        climbing = list(group)
        for rate in LADDER:
            for s in list(climbing):
                e = runner.run(s, "broadcast", ["--subscribers", str(SUBSCRIBERS), "--rate", str(rate), "--duration",
                                                "8s", "--payload", "100", "--publishers", str(LADDER_PUBLISHERS)],
                               f"ladder-{SUBSCRIBERS}x{rate}")
                if e is None or not sustained(e):
                    climbing.remove(s)
        for s in group:
            if s in OURS_ALL:
                # One publisher, one PublishStream, as fast as the server answers: the ordered rate to one channel.
                runner.run(s, "broadcast", ["--subscribers", str(ORDERED_SUBSCRIBERS), "--rate", "0", "--duration", "8s",
                                            "--payload", "100", "--publish-via", "grpc-stream"], ORDERED_TAG)
    jitter_runs(runner, systems)
    write_doc(runner, systems)
    with open(os.path.join(runner.outdir, "suite.json"), "w") as f:
        json.dump(runner.results, f, indent=1)
    return 0


# === the jitter scenario (issue 13) ===

# N subscribers of one channel, one publisher at a steady rate; each subscriber's socket is reset
# every JITTER_CUT_EVERY (its first cut at a random point of the first interval), stays away
# JITTER_OFFLINE, then reconnects and resumes as its system allows. 30 s of publishing gives each
# subscriber three cuts; the three systems together take about two minutes.
JITTER_TAG = "jitter"
JITTER_SUBSCRIBERS = 200
JITTER_RATE = 50
JITTER_DURATION = "30s"
JITTER_CUT_EVERY = "10s"
JITTER_OFFLINE = "2s"
JITTER_FLAGS = ["--subscribers", str(JITTER_SUBSCRIBERS), "--rate", str(JITTER_RATE), "--duration", JITTER_DURATION,
                "--cut-every", JITTER_CUT_EVERY, "--offline", JITTER_OFFLINE, "--payload", "100", "--drain", "5s"]
# The system the jitter scenario runs for each system of the suite's list (when listed): Switchboard's
# cluster on a namespace with history (recovery from JetStream, each reconnect to the other gateway),
# Socket.IO with connection state recovery, NATS's WebSocket listener without recovery (the baseline).
JITTER_SYSTEMS = {"switchboard-cluster-history": "switchboard-cluster-history", "socketio": "socketio-recovery",
                  "nats-ws": "nats-ws"}
JITTER_RECOVERY = {
    "switchboard-cluster-history": "`subscribe` with `recover` (offset and epoch of the last publication), "
                                   "history in JetStream",
    "switchboard-dev-history": "`subscribe` with `recover`, history in the in-process broker",
    "socketio-recovery": "connection state recovery (`40{\"pid\",\"offset\"}`), sessions and packets in Redis Streams",
    "nats-ws": "none: subscribes again",
}


def jitter_runs(runner, systems):
    for listed, system in JITTER_SYSTEMS.items():
        if listed in systems:
            runner.run(system, "jitter", JITTER_FLAGS, JITTER_TAG)


def jitter_only(runner, systems):
    """`--only jitter`: the jitter runs alone; their section replaces the one in the doc, the rest
    of the doc is kept as the last full run wrote it."""
    log("jitter:")
    jitter_runs(runner, systems)
    with open(os.path.join(runner.outdir, "suite.json"), "w") as f:
        json.dump(runner.results, f, indent=1)
    return write_jitter_section(runner)


def write_jitter_section(runner):
    if not any(ok(e) for e in runner.results):
        log("no jitter run produced a report; the doc is not written")
        return 1
    lines = []
    jitter_section(lines.append, runner, only=True)
    splice_section(runner.args.out, "## Jitter", lines)
    log(f"wrote the Jitter section of {os.path.relpath(runner.args.out, ROOT)}")
    return 0


def splice_section(path, heading, lines):
    """Replaces the section of `path` that starts with `heading` (up to the next `## `) with
    `lines`; without one, puts it before the history comparison (or the targets, or the notes)."""
    try:
        with open(path) as f:
            doc = f.read().split("\n")
    except FileNotFoundError:
        doc = []
    start = next((i for i, l in enumerate(doc) if l.startswith(heading)), None)
    if start is None:
        anchors = ("## History against live-only", "## Against the targets", "## Notes on the run")
        start = next((i for a in anchors for i, l in enumerate(doc) if l.startswith(a)), len(doc))
        end = start
    else:
        end = next((i for i in range(start + 1, len(doc)) if doc[i].startswith("## ")), len(doc))
    doc[start:end] = lines
    with open(path, "w") as f:
        f.write("\n".join(doc).rstrip() + "\n")


def jitter_section(w, runner, only=False):
    runs = [e for e in runner.results if e["tag"] == JITTER_TAG]
    if not runs:
        return
    w("## Jitter: delivery through network drops (issue 13)")
    w("")
    if only:
        any_report = next((e["report"] for e in runs if ok(e)), None)
        when = runner.date.strftime("%Y-%m-%d %H:%M UTC")
        commit = any_report["git_commit"] if any_report else "?"
        w(f"Written by `bench/suite.py --only jitter` ({when}, commit `{commit}`, results `{rel(runner.outdir)}/`): "
          "this section alone comes from that run; the sections around it from the last full `make bench`. "
          + (f"Pinned as the full suite pins: every server process on CPU {runner.server_cpus}, the generator on CPU "
             f"{runner.generator_cpus}; on a shared 2-core machine the figures, reconnect times above all, are indicative."
             if runner.server_cpus else "Not pinned (`--no-pin` or fewer than 2 CPUs); the figures are indicative."))
        w("")
    w(f"`switchboard bench jitter`: {JITTER_SUBSCRIBERS} subscribers of one channel, one publisher at {JITTER_RATE} "
      f"publications/s for {JITTER_DURATION}, 100-byte payloads with a sequence number. Every "
      f"{JITTER_CUT_EVERY} (each subscriber's first cut at a random point of the first interval) a subscriber's "
      f"socket is reset (`SO_LINGER` 0: no close frame, no FIN, as a network drop looks to the server); it stays "
      f"away {JITTER_OFFLINE}, then reconnects to the next URL of the system (the other gateway, the other "
      "Socket.IO process) and resumes the way its system's recovery works. One sequence is kept per subscriber "
      "across all its connections. Every subscriber was subscribed before publishing started and stayed a "
      "client to the end, so each is owed every publication: delivery is the distinct publications received "
      "over the publications owed; lost is what never arrived by the end of the drain (5 s after publishing "
      "stopped); duplicated a publication received twice; reordered one received after a later one. Reconnect "
      "is from the end of the offline time to subscribed again (for Switchboard, the `recover` reply; for "
      "Socket.IO, the namespace connect, plus the room join when the session was not recovered). \"Not "
      "recovered\" counts reconnects that resumed nothing (NATS: every one); the drain also waits for every "
      "client to be connected again, so reconnects fall short of cuts only when one could not reconnect within it "
      "(or, in runs made before that wait, was cut after the last publication). Latency p99 includes the "
      "publications recovered after an absence, so it is about the offline time.")
    w("")
    w("| system | recovery | delivery | per client min / mean / max | lost per client min / mean / max | "
      "duplicated (all clients) | reordered (all clients) | clients with everything once, in order | "
      "cuts / reconnects / not recovered | reconnect p50 / p99 / max ms | latency p50 / p99 ms |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for e in runs:
        s = e["system"]
        if not ok(e):
            w(f"| {s} | not run: {(e.get('error') or '').splitlines()[0] if e.get('error') else ''} |||||||||| ")
            continue
        r = e["report"]
        j = r["jitter"]
        d, lost, rc = j["delivery_pct_per_client"], j["lost_per_client"], j["reconnect_ms"]
        w(f"| {s} | {JITTER_RECOVERY.get(s, '')} | {j['delivery_pct']:.3f}% | {d['min']:.2f} / {d['mean']:.3f} / "
          f"{d['max']:.2f}% | {lost['min']:.0f} / {lost['mean']:.2f} / {lost['max']:.0f} | {r['duplicated']} | "
          f"{r['reordered']} | {j['clients_complete']} of {j['clients']} | {j['cuts']} / {j['reconnects']} / "
          f"{j['not_recovered']} | {rc['p50']:.1f} / {rc['p99']:.1f} / {rc['max']:.1f} | "
          f"{r['latency_ms']['p50']:.1f} / {r['latency_ms']['p99']:.0f} |")
    w("")
    w("Published comparison: AnyCable reports 100% delivery under repeated two-second network drops where default "
      "Socket.IO (without connection state recovery) delivered 84.6% (84.55% as issue 13 quotes it) and uWebSockets.js "
      "87.0%, on their machines and at their scale (Evil Martians, \"Choose your fighter: benchmarking 5 "
      "WebSocket servers for Node.js\", 2026-06-24, evilmartians.com/chronicles; the same figures in AnyCable's "
      "documentation, docs.anycable.io/capabilities; harness: github.com/anycable/nodejs-websocket-bench). Their "
      "drops, subscriber count and machine differ from these, so compare the shape (100% or not, loss per client), "
      "not the decimals. Socket.IO here runs with connection state recovery on, which their \"default\" row did not.")
    w("")
    w("Socket.IO: `@socket.io/redis-adapter` (Redis Pub/Sub, the `socketio` system of the other sections) does not "
      "support connection state recovery (its README's feature table says so), so the jitter run uses "
      "`@socket.io/redis-streams-adapter` 0.3.1, which does, with "
      "`connectionStateRecovery: { maxDisconnectionDuration: 120000, skipMiddlewares: true }`: two processes as "
      "in the other sections (`bench/socketio/server.js PORT REDIS_URL streams`).")
    w("")
    commands(w, runner, [e["system"] for e in runs], JITTER_TAG)


def qualifies(e):
    """A broadcast run counts for "highest delivery rate with p99 ≤ 1 s" when its p99 is at most
    1 s, nothing was lost, duplicated or reordered, and no subscriber was closed as slow."""
    if not ok(e):
        return False
    r = e["report"]
    return r["latency_ms"]["p99"] <= 1000 and clean(r) and r["slow_consumer_disconnects"] == 0


def sustained(e):
    """A run is sustained when it qualifies and delivered at least 90% of the deliveries per second
    offered (below that the system, or the publisher sharing its core, is saturated). Only sustained
    runs are reported as a system's rate, and the ladder goes on while its steps are sustained."""
    return qualifies(e) and e["report"]["deliveries_per_sec"] >= 0.9 * e["report"]["rate"] * SUBSCRIBERS



def ladder_why(e):
    if not ok(e):
        return e.get("error", "failed")
    r = e["report"]
    reasons = []
    if r["latency_ms"]["p99"] > 1000:
        reasons.append(f"p99 {r['latency_ms']['p99']:.0f} ms")
    if not clean(r):
        reasons.append(f"lost/dup/reord {r['lost']}/{r['duplicated']}/{r['reordered']}")
    if r["slow_consumer_disconnects"]:
        reasons.append(f"{r['slow_consumer_disconnects']} slow-consumer closes")
    if r["deliveries_per_sec"] < 0.9 * r["rate"] * SUBSCRIBERS:
        reasons.append(f"{r['deliveries_per_sec']:,.0f} of {r['rate'] * SUBSCRIBERS:,.0f} deliveries/s")
    if r["generator_cpu_fraction"] >= 0.9:
        reasons.append(f"generator at {r['generator_cpu_fraction'] * 100:.0f}% of its core")
    return ", ".join(reasons) or "passed"


# === docs/performance.md ===

OURS = ["switchboard-dev", "switchboard-cluster"]
OURS_ALL = OURS + [HISTORY[o] for o in OURS]
PEERS = ["floor", "nats-ws", "socketio"]


def find(runner, system, tag):
    for e in runner.results:
        if e["system"] == system and e["tag"] == tag:
            return e
    return None


def ratio(ours, peer):
    if ours is None or peer is None or peer == 0:
        return "–"
    return f"{ours / peer:.2f}×"


def write_doc(runner, systems):
    any_report = next((e["report"] for e in runner.results if ok(e)), None)
    if any_report is None:
        log("no run produced a report; docs/performance.md not written")
        return
    m = any_report["machine"]
    out = []
    w = out.append
    w("# Performance")
    w("")
    w("Written by `make bench` (`bench/suite.py`); every figure here was measured in one run of the suite, "
      "on the machine below, by the command listed with it. Do not edit by hand: rerun `make bench`.")
    w("Numbers on a 2-core machine are noisy; compare systems by the ratios taken in the same run, not across runs.")
    w("")
    w(f"- Date: {runner.date.strftime('%Y-%m-%d %H:%M UTC')}; results: `{rel(runner.outdir)}/` (not kept in git)")
    w(f"- Commit: `{any_report['git_commit']}`")
    w(f"- Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_bytes'] / 2**30:.1f} GiB, Linux {m['kernel']}")
    if runner.server_cpus:
        w(f"- Pinning: every server process on CPU {runner.server_cpus} (`taskset -c {runner.server_cpus}`), the load "
          f"generator on CPU {runner.generator_cpus} (`taskset -c {runner.generator_cpus}`); the generator read back "
          f"its own `Cpus_allowed_list` as `{any_report['pinning']['generator_cpus']}` and the servers' as "
          f"`{', '.join(sorted({p['cpus'] for p in any_report['pinning']['server']}))}`.")
    else:
        w("- Pinning: none (fewer than 2 CPUs, or `--no-pin`): server and generator shared the CPUs.")
    w("- Payload: 100 bytes (`{\"t\":…,\"s\":…,\"p\":\"xxx…\"}`); connections spread over source addresses "
      "127.0.0.1–127.0.0.8; every run starts its system afresh.")
    w("- Ratios are ours ÷ peer: below 1 is better for costs (memory, CPU, latency), above 1 is better for rates.")
    w("")
    w("Systems:")
    w("")
    w("| system | what runs |")
    w("|---|---|")
    descriptions = {
        "switchboard-dev": "`switchboard dev`: gateway, gRPC API and the in-process bus in one process; publications through gRPC",
        "switchboard-cluster": "`nats-server` (JetStream on), one `switchboard control`, two `switchboard gateway` "
                               "on it; subscribers split over both gateways, publications through control's gRPC API",
        "switchboard-dev-history": f"switchboard-dev on a channel of the namespace `{HISTORY_NAMESPACE}`, which keeps "
                                   f"history (`history_size = {HISTORY_SIZE}`): every publication stored in the "
                                   "in-process broker before it is delivered",
        "switchboard-cluster-history": f"switchboard-cluster on a channel of the namespace `{HISTORY_NAMESPACE}` "
                                       f"(`history_size = {HISTORY_SIZE}`): every publication goes to the namespace's "
                                       "JetStream stream, is acknowledged, and the stream republishes it to the "
                                       "gateways' subject",
        "nats-ws": "`nats-server` with its WebSocket listener (`bench/nats-ws.conf`); subscribers speak NATS over "
                   "WebSocket, the publisher plain NATS over TCP",
        "floor": "`bench-floor` (`crates/switchboard-bench/src/bin/bench-floor.rs`): the minimal broadcaster, one "
                 "thread, no protocol; every message a connection sends is framed once and written to every other "
                 "connection, one write per connection for everything that arrived since its previous round, and what a "
                 "socket refuses kept in a bounded backlog written when the socket is writable. The bar for CPU and "
                 "latency, not a product",
        "socketio-recovery": "the socketio system with `@socket.io/redis-streams-adapter` 0.3.1 instead of the "
                             "Pub/Sub adapter, and connection state recovery on (jitter only)",
        "socketio": "two Socket.IO 4.8 processes (`bench/socketio/server.js`) joined by `@socket.io/redis-adapter` 8.3 "
                    "on `redis-server`; subscribers split over both, the publisher a Socket.IO client of the first",
    }
    # Systems that only the jitter runs started (socketio-recovery) are listed too.
    ran = [e["system"] for e in runner.results if e["system"] not in systems]
    for s in list(dict.fromkeys(systems + ran)):
        w(f"| {s} | {descriptions.get(s, s)} |")
    w("")
    w("Centrifugo is not measured: it is not available here (no Debian or npm package, and this machine reaches "
      "nothing but package registries).")
    w("")

    # Idle.
    tag = f"idle-{IDLE}"
    w(f"## Idle subscribed connections ({IDLE:,} per run)")
    w("")
    w("Connect, subscribe one channel, hold 5 s; server RSS growth over the connections, from before the first "
      "connect to after settling (summed over every process of the system).")
    w("")
    w("| system | connections | server RSS per connection | connects/s | connect p50 / p99 ms | server CPU per connect |")
    w("|---|---|---|---|---|---|")
    for s in systems:
        e = find(runner, s, tag)
        if e is None:
            continue
        if not ok(e):
            w(f"| {s} | not run: {e.get('error', '').splitlines()[0] if e.get('error') else ''} | | | | |")
            continue
        r = e["report"]
        c = r["connect"]
        w(f"| {s} | {r['connections']:,} | {fmt_kib(r['server_rss_bytes_per_connection'])} | {c['per_sec']:,.0f} | "
          f"{c['latency_ms']['p50']:.1f} / {c['latency_ms']['p99']:.1f} | {fmt(r['server_cpu_us_per_connection'], 0, ' µs')} |")
    w("")
    ratio_rows(w, runner, systems, tag, "RSS per connection", lambda r: r["server_rss_bytes_per_connection"])
    commands(w, runner, systems, tag)

    # Broadcast at fixed rates.
    for rate, what in ((1, "latency at a low rate"), (10, "CPU per delivery"), (50, "latency at a moderate rate")):
        tag = f"broadcast-{SUBSCRIBERS}x{rate}"
        w(f"## Broadcast: {SUBSCRIBERS:,} subscribers, {rate} publication{'s' if rate > 1 else ''}/s ({what})")
        w("")
        w("Latency is from the publisher's send (before the gRPC call, the NATS publish or the Socket.IO emit) to "
          "the subscriber's read. Lost counts publications not delivered by the end of the drain window (5 s after "
          "publishing stopped), so an overloaded system that would deliver them later counts them as lost.")
        w("")
        broadcast_table(w, runner, systems, tag)
        ratio_rows(w, runner, systems, tag, "p50 latency", lambda r: r["latency_ms"]["p50"])
        ratio_rows(w, runner, systems, tag, "p99 latency", lambda r: r["latency_ms"]["p99"])
        ratio_rows(w, runner, systems, tag, "server CPU per delivery", lambda r: r["server_cpu_us_per_delivery"])
        commands(w, runner, systems, tag)

    # Ladder.
    w(f"## Highest delivery rate with p99 ≤ 1 s ({SUBSCRIBERS:,} subscribers)")
    w("")
    w(f"After the fixed rates above, the publication rate doubles ({', '.join(str(r) for r in LADDER)}/s, 8 s each, "
      f"spread over {LADDER_PUBLISHERS} publishers with a sequence each, so that a publisher waiting for its answers "
      "does not cap the rate offered) while a step keeps p99 ≤ 1 s with nothing lost and no slow-consumer close, and delivers at least 90% of the "
      "offered deliveries per second. The best run is the one with the most deliveries per second among the "
      "sustained runs: every broadcast run above and every ladder step that kept p99 ≤ 1 s with nothing lost and "
      "no slow-consumer close, and delivered at least 90% of what was offered. A step below 90% is listed below, "
      "never reported as a rate.")
    w("")
    w("| system | best run | deliveries/s | p99 ms | server CPU per delivery | generator CPU | the ladder stopped at |")
    w("|---|---|---|---|---|---|---|")
    best = {}
    for s in systems:
        runs = [e for e in runner.results if e["system"] == s and e["tag"].startswith(("broadcast-", "ladder-"))]
        steps = [e for e in runs if e["tag"].startswith("ladder-")]
        failed = [e for e in steps if not sustained(e)]
        stop = f"{failed[0]['tag'].split('x')[-1]}/s: {ladder_why(failed[0])}" if failed else "the last step passed"
        good = [e for e in runs if sustained(e)]
        if not good:
            w(f"| {s} | none | | | | | {stop} |")
            continue
        top = max(good, key=lambda e: e["report"]["deliveries_per_sec"])
        r = top["report"]
        best[s] = r["deliveries_per_sec"]
        w(f"| {s} | {r['rate']:.0f}/s | {r['deliveries_per_sec']:,.0f} | {r['latency_ms']['p99']:.1f} | "
          f"{fmt(r['server_cpu_us_per_delivery'], 2, ' µs')} | {r['generator_cpu_fraction'] * 100:.0f}% | {stop} |")
    w("")
    for o in OURS:
        for p in PEERS:
            if o in best and p in best:
                w(f"- {o} ÷ {p}: {best[o] / best[p]:.2f}× the deliveries per second")
    w("")
    w("Every ladder step, passing or not:")
    w("")
    w("```text")
    for s in systems:
        for r_ in LADDER:
            e = find(runner, s, f"ladder-{SUBSCRIBERS}x{r_}")
            if e is not None:
                w(summary(e))
    w("```")
    w("")
    for r_ in LADDER:
        if any(find(runner, s, f"ladder-{SUBSCRIBERS}x{r_}") for s in systems):
            w(f"Step {r_}/s:")
            w("")
            commands(w, runner, systems, f"ladder-{SUBSCRIBERS}x{r_}")

    # Ordered publishing.
    w(f"## Ordered publishing to one channel: one `PublishStream` ({ORDERED_SUBSCRIBERS} subscribers)")
    w("")
    w("One publisher sends on one `PublishStream` as fast as the server takes it (`--publish-via grpc-stream "
      "--rate 0`): the server publishes each request of the channel only once the previous one's publish returned, "
      "so this is the highest rate at which one backend's publications to one channel arrive in order. Reordered "
      "must be 0. The channel's namespace is live-only, except in the `-history` rows (the namespace "
      f"`{HISTORY_NAMESPACE}`, `history_size = {HISTORY_SIZE}`: every publish waits for the store's acknowledgement).")
    w("")
    w("| system | publications/s | deliveries/s | p50 / p99 ms | lost / dup / reord | publish errors |")
    w("|---|---|---|---|---|---|")
    for s in systems:
        e = find(runner, s, ORDERED_TAG)
        if e is None:
            continue
        if not ok(e):
            w(f"| {s} | not run: {(e.get('error') or '').splitlines()[0] if e.get('error') else ''} | | | | |")
            continue
        r = e["report"]
        l = r["latency_ms"]
        w(f"| {s} | {r['publications_per_sec']:,.0f} | {r['deliveries_per_sec']:,.0f} | {l['p50']:.1f} / {l['p99']:.1f} | "
          f"{r['lost']} / {r['duplicated']} / {r['reordered']} | {r['publish_errors']} |")
    w("")
    commands(w, runner, systems, ORDERED_TAG)

    jitter_section(w, runner)
    history_section(w, runner, systems)
    before_after(w, runner, best)
    targets(w, runner, best)
    targets_history(w, runner, best)
    notes = os.path.join(BENCH, "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            w(f.read().rstrip())
        w("")
    with open(runner.args.out, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    log(f"wrote {os.path.relpath(runner.args.out, ROOT)}")


BEFORE_COMMANDS = {
    "broadcast-5000x1": "taskset -c 1 target/release/switchboard bench broadcast --target switchboard --url ws://127.0.0.1:52101/ws,ws://127.0.0.1:38731/ws --server-pid 15199,15204,15205,15206 --label switchboard-cluster --sources 8 --json bench/results/full-20261201-110025/broadcast-5000x1-switchboard-cluster.json --quiet --grpc http://127.0.0.1:57137 --subscribers 5000 --rate 1 --duration 10s --payload 100",
    "broadcast-5000x10": "taskset -c 1 target/release/switchboard bench broadcast --target switchboard --url ws://127.0.0.1:60767/ws,ws://127.0.0.1:59533/ws --server-pid 15215,15221,15222,15223 --label switchboard-cluster --sources 8 --json bench/results/full-20261201-110025/broadcast-5000x10-switchboard-cluster.json --quiet --grpc http://127.0.0.1:36863 --subscribers 5000 --rate 10 --duration 10s --payload 100",
    "broadcast-5000x50": "taskset -c 1 target/release/switchboard bench broadcast --target switchboard --url ws://127.0.0.1:46129/ws,ws://127.0.0.1:55245/ws --server-pid 15231,15236,15237,15238 --label switchboard-cluster --sources 8 --json bench/results/full-20261201-110025/broadcast-5000x50-switchboard-cluster.json --quiet --grpc http://127.0.0.1:50995 --subscribers 5000 --rate 50 --duration 10s --payload 100",
    "ladder-5000x100": "taskset -c 1 target/release/switchboard bench broadcast --target switchboard --url ws://127.0.0.1:53757/ws,ws://127.0.0.1:46737/ws --server-pid 15247,15253,15254,15255 --label switchboard-cluster --sources 8 --json bench/results/full-20261201-110025/ladder-5000x100-switchboard-cluster.json --quiet --grpc http://127.0.0.1:56807 --subscribers 5000 --rate 100 --duration 8s --payload 100 --publishers 4",
    "ladder-5000x200": "taskset -c 1 target/release/switchboard bench broadcast --target switchboard --url ws://127.0.0.1:32805/ws,ws://127.0.0.1:44121/ws --server-pid 15263,15269,15270,15271 --label switchboard-cluster --sources 8 --json bench/results/full-20261201-110025/ladder-5000x200-switchboard-cluster.json --quiet --grpc http://127.0.0.1:38419 --subscribers 5000 --rate 200 --duration 8s --payload 100 --publishers 4",
    "ladder-5000x400": "taskset -c 1 target/release/switchboard bench broadcast --target switchboard --url ws://127.0.0.1:44415/ws,ws://127.0.0.1:59637/ws --server-pid 15280,15285,15286,15287 --label switchboard-cluster --sources 8 --json bench/results/full-20261201-110025/ladder-5000x400-switchboard-cluster.json --quiet --grpc http://127.0.0.1:57383 --subscribers 5000 --rate 400 --duration 8s --payload 100 --publishers 4",
    "ladder-5000x800": "taskset -c 1 target/release/switchboard bench broadcast --target switchboard --url ws://127.0.0.1:46815/ws,ws://127.0.0.1:43999/ws --server-pid 15296,15302,15303,15304 --label switchboard-cluster --sources 8 --json bench/results/full-20261201-110025/ladder-5000x800-switchboard-cluster.json --quiet --grpc http://127.0.0.1:53767 --subscribers 5000 --rate 800 --duration 8s --payload 100 --publishers 4",
}


# The previous docs/performance.md (`git show 0885947:docs/performance.md`), written by `make bench`
# at commit 6650185, when control replicas sequenced every publication: switchboard-cluster's
# figures, the "before" of issue 12. (deliveries/s, p99 ms, server CPU µs per delivery)
BEFORE_COMMIT = "6650185"
BEFORE_DOC = "0885947"
BEFORE_RESULTS = "bench/results/full-20261201-110025/"
BEFORE = {
    "broadcast-5000x1": (4998, 51.5, 9.80),
    "broadcast-5000x10": (49981, 56.1, 7.74),
    "broadcast-5000x50": (249902, 81.9, 3.93),
    "ladder-5000x100": (499742, 70.3, 1.97),
    "ladder-5000x200": (1000110, 102.0, 0.99),
    "ladder-5000x400": (1998929, 131.5, 0.50),
    "ladder-5000x800": (2814717, 179.8, 0.34),  # 70% of the 4,000,000 offered: not sustained
}
BEFORE_BEST = "ladder-5000x400"  # the best sustained run then
SPEEDUP_TARGET = 1.3  # issue 12: the live-only cluster path at least 1.3x the old deliveries/s at p99 <= 1 s
HISTORY_CPU_TARGET = 1.5  # issue 12: a history namespace within 1.5x of live-only in CPU per delivery


def paired_tags(runner, base):
    """Tags run by both `base` and its history variant, in the order they ran."""
    v = HISTORY[base]
    tags = [e["tag"] for e in runner.results if e["system"] == base]
    return [t for t in tags if t.startswith(("broadcast-", "ladder-", "ordered-")) and find(runner, v, t)]


def history_section(w, runner, systems):
    pairs = [(b, HISTORY[b]) for b in OURS if b in systems and HISTORY[b] in systems]
    if not pairs:
        return
    w("## History against live-only, in the same run (issue 12)")
    w("")
    w("Each Switchboard system ran every broadcast, ladder and ordered run twice, one right after the other: on a "
      f"channel of a live-only namespace (`bench:…`) and, as its `-history` variant, on a channel of the namespace "
      f"`{HISTORY_NAMESPACE}` (`[channels.namespaces.{HISTORY_NAMESPACE}] history_size = {HISTORY_SIZE}`; the generator's "
      f"`--namespace {HISTORY_NAMESPACE}`). Both variants read the same configuration file (`switchboard.toml` in each "
      "run's directory) and the cluster's `nats-server` runs JetStream in both; only the channel's namespace differs. "
      "On NATS a live-only publish is one core NATS publish; with history it is a JetStream publish that waits for the "
      "stream's acknowledgement, and the stream republishes the message to the subject the gateways subscribe to. "
      "Ratios are history ÷ live-only; the commands are those of the sections above (the `-history` rows).")
    w("")
    w("| system | run | deliveries/s live / history | ratio | p99 ms live / history | server CPU per delivery live / "
      "history | ratio | history: lost / dup / reord, slow closes |")
    w("|---|---|---|---|---|---|---|---|")
    for base, var in pairs:
        for tag in paired_tags(runner, base):
            el, eh = find(runner, base, tag), find(runner, var, tag)
            if not ok(el) or not ok(eh):
                why = (el.get("error") if not ok(el) else eh.get("error")) or "failed"
                w(f"| {base} | {tag} | not compared: {why.splitlines()[0]} | | | | | |")
                continue
            rl, rh = el["report"], eh["report"]
            cl, ch = rl["server_cpu_us_per_delivery"], rh["server_cpu_us_per_delivery"]
            w(f"| {base} | {tag} | {rl['deliveries_per_sec']:,.0f} / {rh['deliveries_per_sec']:,.0f} | "
              f"{ratio(rh['deliveries_per_sec'], rl['deliveries_per_sec'])} | {rl['latency_ms']['p99']:.1f} / "
              f"{rh['latency_ms']['p99']:.1f} | {fmt(cl, 2, ' µs')} / {fmt(ch, 2, ' µs')} | {ratio(ch, cl)} | "
              f"{rh['lost']} / {rh['duplicated']} / {rh['reordered']}, {rh['slow_consumer_disconnects']} |")
    w("")
    for base, var in pairs:
        el, eh = find(runner, base, ORDERED_TAG), find(runner, var, ORDERED_TAG)
        if el and eh and ok(el) and ok(eh):
            rl, rh = el["report"], eh["report"]
            w(f"{ORDERED_TAG} ({base}) publishes as fast as the server answers, so its rates differ by design: "
              f"{rl['publications_per_sec']:,.0f} publications/s live-only (lost {rl['lost']:,}) against "
              f"{rh['publications_per_sec']:,.0f}/s with history (lost {rh['lost']:,}), where each of the channel's "
              "publishes starts once the previous one is stored (on NATS, once JetStream acknowledged it): "
              f"{1e6 / rh['publications_per_sec']:,.0f} µs each. "
              "Its CPU per delivery is left out of the targets below.")
            w("")


def before_after(w, runner, best):
    if find(runner, "switchboard-cluster", BEFORE_BEST) is None and "switchboard-cluster" not in best:
        return
    w("## The cluster path before and after the sequencer left (issue 12)")
    w("")
    w(f"\"Before\" is switchboard-cluster in the previous `docs/performance.md`, written by `make bench` at commit "
      f"`{BEFORE_COMMIT}`, when a control replica sequenced every publication (`git show {BEFORE_DOC}:docs/performance.md` "
      f"lists every command of that run; results `{BEFORE_RESULTS}`, not kept). \"After\" is switchboard-cluster in this "
      "run, on a live-only channel: control publishes once on core NATS, with no sequencer hop. The two come from "
      "different runs on a shared 2-core machine, so small differences are noise; the same scenario and flags, except "
      "`--config` (the namespace with history, unused by these channels) and JetStream on in `nats-server`.")
    w("")
    w("| run | before: deliveries/s | p99 ms | CPU per delivery | after: deliveries/s | p99 ms | CPU per delivery | "
      "deliveries/s after ÷ before |")
    w("|---|---|---|---|---|---|---|---|")
    for tag, (d, p99, cpu) in BEFORE.items():
        e = find(runner, "switchboard-cluster", tag)
        if e is None or not ok(e):
            after = "not run in this run | | "
            r = "–"
        else:
            a = e["report"]
            after = (f"{a['deliveries_per_sec']:,.0f}{'' if sustained(e) else ' (not sustained)'} | "
                     f"{a['latency_ms']['p99']:.1f} | {fmt(a['server_cpu_us_per_delivery'], 2, ' µs')}")
            r = ratio(a["deliveries_per_sec"], d)
        note = " (not sustained: 70% of the offered)" if tag == "ladder-5000x800" else ""
        w(f"| {tag} | {d:,}{note} | {p99:.1f} | {cpu:.2f} µs | {after} | {r} |")
    w("")
    d0 = BEFORE[BEFORE_BEST][0]
    if "switchboard-cluster" in best:
        w(f"Best sustained run (p99 ≤ 1 s, nothing lost, at least 90% of the offered): before {d0:,}/s "
          f"({BEFORE_BEST}), after {best['switchboard-cluster']:,.0f}/s: {best['switchboard-cluster'] / d0:.2f}×.")
    else:
        w("After: no sustained run of switchboard-cluster in this run.")
    w("")
    w("<details><summary>Commands (before)</summary>")
    w("")
    w("```sh")
    w(f"# at commit {BEFORE_COMMIT}; servers as listed in git show {BEFORE_DOC}:docs/performance.md")
    for tag in BEFORE:
        w(BEFORE_COMMANDS[tag])
    w("```")
    w("")
    w("</details>")
    w("")


def targets_history(w, runner, best):
    w("## Against the targets of issue 12")
    w("")
    w("| target | measured here | met? |")
    w("|---|---|---|")
    d0 = BEFORE[BEFORE_BEST][0]
    bar = SPEEDUP_TARGET * d0
    if "switchboard-cluster" in best:
        b = best["switchboard-cluster"]
        top = max((e for e in runner.results if e["system"] == "switchboard-cluster" and sustained(e)
                   and e["tag"].startswith(("broadcast-", "ladder-"))),
                  key=lambda e: e["report"]["deliveries_per_sec"])
        fell = [e for e in runner.results if e["system"] == "switchboard-cluster" and e["tag"].startswith("ladder-")
                and ok(e) and not sustained(e)]
        more = (f"; the ladder stopped at {fell[0]['tag'].split('x')[-1]}/s: {ladder_why(fell[0])}" if fell else "")
        w(f"| live-only cluster ≥ {SPEEDUP_TARGET}× the deliveries/s of `{BEFORE_COMMIT}` at p99 ≤ 1 s (≥ {bar:,.0f}/s) | "
          f"{b:,.0f}/s ({top['tag']}, p99 {top['report']['latency_ms']['p99']:.1f} ms) ÷ {d0:,}/s = {b / d0:.2f}×{more} | "
          f"{'yes' if b >= bar else 'no'} |")
    else:
        w(f"| live-only cluster ≥ {SPEEDUP_TARGET}× the deliveries/s of `{BEFORE_COMMIT}` at p99 ≤ 1 s | no sustained run | no |")
    for base in OURS:
        var = HISTORY[base]
        tags = paired_tags(runner, base)
        if not tags:
            continue
        tag = f"broadcast-{SUBSCRIBERS}x10"
        el, eh = find(runner, base, tag), find(runner, var, tag)
        if el and eh and ok(el) and ok(eh):
            cl, ch = el["report"]["server_cpu_us_per_delivery"], eh["report"]["server_cpu_us_per_delivery"]
            met = cl and ch is not None and ch / cl <= HISTORY_CPU_TARGET
            w(f"| history within {HISTORY_CPU_TARGET}× of live-only in CPU per delivery, 10 publications/s ({base}) | "
              f"{fmt(ch, 2, ' µs')} ÷ {fmt(cl, 2, ' µs')} = {ratio(ch, cl)} | {'yes' if met else 'no'} |")
        rows = []
        for t in tags:
            if t == ORDERED_TAG:
                continue  # not at the same rate: see the history section
            el, eh = find(runner, base, t), find(runner, var, t)
            if ok(el) and ok(eh) and el["report"]["server_cpu_us_per_delivery"] and eh["report"]["server_cpu_us_per_delivery"]:
                rows.append((eh["report"]["server_cpu_us_per_delivery"] / el["report"]["server_cpu_us_per_delivery"], t))
        if rows:
            worst = max(rows)
            w(f"| … in every broadcast and ladder run ({base}) | worst {worst[0]:.2f}× ({worst[1]}), of {len(rows)} runs | "
              f"{'yes' if worst[0] <= HISTORY_CPU_TARGET else 'no'} |")
    hist_runs = [e for e in runner.results if e["system"] in BASE and ok(e)]
    if hist_runs:
        bad = [e for e in hist_runs if not clean(e["report"])]
        w(f"| nothing lost, duplicated or reordered on a channel with history | "
          f"{len(bad)} of {len(hist_runs)} runs with a loss, duplicate or reorder"
          + (": " + ", ".join(f"{e['system']} {e['tag']} {e['report']['lost']}/{e['report']['duplicated']}/"
                              f"{e['report']['reordered']}" for e in bad) if bad else "")
          + f" | {'yes' if not bad else 'no'} |")
    w("")


def broadcast_table(w, runner, systems, tag):
    w("| system | deliveries/s | p50 | p90 | p99 | p99.9 | max (ms) | lost / dup / reord | slow closes | "
      "server CPU per delivery | generator CPU |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for s in systems:
        e = find(runner, s, tag)
        if e is None:
            continue
        if not ok(e):
            w(f"| {s} | not run: {(e.get('error') or '').splitlines()[0] if e.get('error') else ''} |||||||||| ")
            continue
        r = e["report"]
        l = r["latency_ms"]
        w(f"| {s} | {r['deliveries_per_sec']:,.0f} | {l['p50']:.1f} | {l['p90']:.1f} | {l['p99']:.1f} | {l['p999']:.1f} | "
          f"{l['max']:.1f} | {r['lost']} / {r['duplicated']} / {r['reordered']} | {r['slow_consumer_disconnects']} | "
          f"{fmt(r['server_cpu_us_per_delivery'], 2, ' µs')} | {r['generator_cpu_fraction'] * 100:.0f}% |")
    w("")


def ratio_rows(w, runner, systems, tag, what, value):
    lines = []
    for o in OURS:
        eo = find(runner, o, tag)
        if eo is None or not ok(eo):
            continue
        for p in PEERS:
            ep = find(runner, p, tag)
            if ep is None or not ok(ep):
                continue
            lines.append(f"{o} ÷ {p} {ratio(value(eo['report']), value(ep['report']))}")
    if lines:
        w(f"{what}, ours ÷ peer: " + "; ".join(lines) + ".")
        w("")


def commands(w, runner, systems, tag):
    w("<details><summary>Commands</summary>")
    w("")
    w("```sh")
    for s in systems:
        e = find(runner, s, tag)
        if e is None or "command" not in e:
            continue
        w(f"# {s}: servers")
        for c in e["servers"]:
            w(c)
        w("# generator")
        w(e["command"])
    w("```")
    w("")
    w("</details>")
    w("")


def targets(w, runner, best):
    w("## Against the targets of issue 4")
    w("")
    w("| target | measured here | met? |")
    w("|---|---|---|")
    idle = {s: find(runner, s, f"idle-{IDLE}") for s in OURS + PEERS}
    rss = {s: e["report"]["server_rss_bytes_per_connection"] for s, e in idle.items() if e and ok(e)
           and e["report"]["server_rss_bytes_per_connection"] is not None}
    dev_rss = rss.get("switchboard-dev")
    if dev_rss is not None:
        # The floor is the bar, not a peer a user would pick.
        peers = [rss[p] for p in PEERS if p in rss and p != "floor"]
        below_peers = all(dev_rss < p for p in peers) if peers else None
        w(f"| gateway RSS per idle subscribed connection ≤ 4 KiB at {IDLE:,} connections | {dev_rss / 1024:.2f} KiB "
          f"(switchboard-dev) | {'yes' if dev_rss <= 4096 else 'no'} |")
        w(f"| … and less than every peer's in the same run | "
          + ", ".join(f"{p} {rss[p] / 1024:.2f} KiB" for p in PEERS if p in rss and p != "floor")
          + f" | {'yes' if below_peers else 'no' if below_peers is not None else 'no peer measured'} |")
    for s in OURS:
        if s in best:
            w(f"| broadcast ≥ 2M deliveries/s with p99 ≤ 1 s ({s}) | {best[s]:,.0f}/s | "
              f"{'yes' if best[s] >= 2e6 else 'no'} |")
        else:
            w(f"| broadcast ≥ 2M deliveries/s with p99 ≤ 1 s ({s}) | no passing step | no |")
    for s in OURS:
        for rate, what, key, bound in ((1, "p99", lambda r: r["latency_ms"]["p99"], 1.5),
                                       (50, "p99", lambda r: r["latency_ms"]["p99"], 1.5),
                                       (10, "CPU per delivery", lambda r: r["server_cpu_us_per_delivery"], 1.3)):
            tag = f"broadcast-{SUBSCRIBERS}x{rate}"
            eo, ef = find(runner, s, tag), find(runner, "floor", tag)
            if eo is None or ef is None or not ok(eo) or not ok(ef):
                w(f"| {what} within {bound}× of the floor's at {rate} publication{'s' if rate > 1 else ''}/s ({s}) | "
                  f"not measured in this run | – |")
                continue
            vo, vf = key(eo["report"]), key(ef["report"])
            unit = " ms" if what == "p99" else " µs"
            met = vo is not None and vf and vo / vf <= bound
            w(f"| {what} within {bound}× of the floor's at {rate} publication{'s' if rate > 1 else ''}/s ({s}) | "
              f"{fmt(vo, 1 if what == 'p99' else 2, unit)} ÷ {fmt(vf, 1 if what == 'p99' else 2, unit)} = "
              f"{ratio(vo, vf)} | {'yes' if met else 'no'} |")
    unclean = [e for e in runner.results if ok(e) and not clean(e["report"])
               and e["report"]["slow_consumer_disconnects"] == 0 and e["system"] in OURS_ALL]
    w(f"| zero lost, duplicated or reordered messages in every run without a slow-consumer event | "
      f"{len(unclean)} runs of ours with a loss, duplicate or reorder | {'yes' if not unclean else 'no'} |")
    w("")
    saturated = [e for e in runner.results if ok(e) and e["report"]["generator_cpu_fraction"] >= 0.9]
    if saturated:
        w("The generator used 90% or more of its core in these runs, so their rates measure the generator as much "
          "as the server: " + ", ".join(f"{e['system']} {e['tag']}" for e in saturated) + ".")
        w("")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the ~1 minute sanity run (switchboard-dev only)")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "switchboard"))
    ap.add_argument("--systems", default="switchboard-dev,switchboard-dev-history,switchboard-cluster,"
                    "switchboard-cluster-history,floor,nats-ws,socketio",
                    help="comma-separated; a -history system is its base system on a channel of a namespace "
                    f"with history (`{HISTORY_NAMESPACE}:…`, history_size {HISTORY_SIZE}), run by turns with "
                    "its base when both are listed")
    ap.add_argument("--only", metavar="TAGS", help="run only the runs whose tag starts with one of these "
                    "(comma-separated: idle, broadcast, ladder, broadcast-5000x10, jitter, …); `--only jitter` "
                    "alone rewrites only the doc's Jitter section")
    ap.add_argument("--results", default=os.path.join(BENCH, "results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "performance.md"))
    ap.add_argument("--no-pin", action="store_true", help="do not pin servers and generator to different CPUs")
    ap.add_argument("--from", dest="from_dir", metavar="DIR",
                    help="only write the doc, from a finished full run's DIR/suite.json")
    args = ap.parse_args()
    if args.from_dir:
        runner = Runner(args, outdir=os.path.abspath(args.from_dir))
        path = os.path.join(runner.outdir, "suite.json")
        with open(path) as f:
            runner.results = json.loads(rel(f.read()))
        runner.date = datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc)
        if all(e["tag"] == JITTER_TAG for e in runner.results):
            return write_jitter_section(runner)
        systems = list(dict.fromkeys(e["system"] for e in runner.results))
        write_doc(runner, systems)
        return 0
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} is not built: cargo build --release -p switchboard")
    runner = Runner(args)
    if args.quick:
        return quick(runner)
    systems = [s for s in args.systems.split(",") if s]
    if args.only and set(args.only.split(",")) == {JITTER_TAG}:
        return jitter_only(runner, systems)
    return full(runner, systems)


if __name__ == "__main__":
    sys.exit(main())
