#!/usr/bin/env python3
"""Writes switchboard.json, the Grafana dashboard, from the panel list below.

Edit this file, not the JSON: `python3 deploy/grafana/build.py` rewrites it, and the chart
tests fail when the two differ (and when a panel names a metric the binary does not expose,
see tests/e2e/metrics.rs). deploy/README.md lists the panels with the question each answers.
"""
import json
import pathlib

NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"


def q(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def quantiles(metric, by, qs=(0.5, 0.9, 0.99), extra=""):
    sel = f"{{{NS}{extra}}}"
    return [
        q(f"histogram_quantile({x}, sum by ({by}, le) (rate({metric}_bucket{sel}[{RATE}])))", f"p{int(x * 100)} {{{{{by}}}}}")
        for x in qs
    ]


# (row title, [(panel title, question, unit, kind, targets)])
ROWS = [
    ("Connections", [
        ("Connections per pod", "How many sessions does each gateway hold?", "short", "timeseries",
         [q(f"sum by (pod) (switchboard_gateway_connections{{{NS}}})", "{{pod}}")]),
        ("Connect rate", "How fast are clients connecting, per gateway?", "cps", "timeseries",
         [q(f"sum by (pod) (rate(switchboard_gateway_connections_total{{{NS}}}[{RATE}]))", "{{pod}}")]),
        ("Disconnects by close code", "Why are sessions ending (4001 drain, 4002 slow consumer, 4501 token, client, gone)?", "cps", "timeseries",
         [q(f"sum by (code) (rate(switchboard_gateway_disconnects_total{{{NS}}}[{RATE}]))", "{{code}}")]),
        ("Versions running", "Which versions and commits are deployed, and on how many pods?", "short", "table",
         [{**q(f"count by (version, commit) (switchboard_build_info{{{NS}}})", ""), "format": "table", "instant": True}]),
    ]),
    ("Latency", [
        ("Handshake latency", "How long from TCP accept to the WebSocket upgrade?", "s", "timeseries",
         quantiles("switchboard_gateway_handshake_duration_seconds", "namespace")),
        ("Connect latency", "How long does a connect (token check, registration) take?", "s", "timeseries",
         quantiles("switchboard_gateway_connect_duration_seconds", "namespace")),
        ("Delivery latency", "How long from a publication's receipt off NATS until every local subscriber has it (sampled 1 in 16)?", "s", "timeseries",
         quantiles("switchboard_gateway_delivery_duration_seconds", "write")),
        ("Delivery latency p99 per pod", "Is one gateway slower than the others?", "s", "timeseries",
         quantiles("switchboard_gateway_delivery_duration_seconds", "pod", qs=(0.99,))),
    ]),
    ("Throughput", [
        ("Deliveries per second", "How many publication frames reach sessions, per gateway?", "ops", "timeseries",
         [q(f"sum by (pod) (rate(switchboard_gateway_deliveries_total{{{NS}}}[{RATE}]))", "{{pod}}")]),
        ("Publications per second", "How many publications arrive off NATS for local subscribers?", "ops", "timeseries",
         [q(f"sum by (pod) (rate(switchboard_gateway_publications_total{{{NS}}}[{RATE}]))", "{{pod}}")]),
        ("Client messages per second", "How many commands do clients send?", "ops", "timeseries",
         [q(f"sum by (pod) (rate(switchboard_gateway_messages_received_total{{{NS}}}[{RATE}]))", "{{pod}}")]),
        ("Subscriptions and channels", "How many subscriptions, local channels and NATS subscriptions does each gateway hold?", "short", "timeseries",
         [q(f"sum by (pod) (switchboard_gateway_subscriptions{{{NS}}})", "subscriptions {{pod}}"),
          q(f"sum by (pod) (switchboard_gateway_channels{{{NS}}})", "channels {{pod}}"),
          q(f"sum by (pod) (switchboard_gateway_bus_subscriptions{{{NS}}})", "nats subscriptions {{pod}}")]),
    ]),
    ("Backpressure and protection", [
        ("Outbound queue bytes", "How much is queued to sessions that have not written it yet?", "bytes", "timeseries",
         [q(f"sum by (pod) (switchboard_gateway_outbound_queue_bytes{{{NS}}})", "{{pod}}")]),
        ("Slow consumers closed", "How many sessions are closed because they cannot keep up (4002)?", "cps", "timeseries",
         [q(f"sum by (pod) (rate(switchboard_gateway_slow_consumers_total{{{NS}}}[{RATE}]))", "{{pod}}")]),
        ("Auth failures by reason", "Why are tokens refused (expired, invalid, unknown_key, …)?", "cps", "timeseries",
         [q(f"sum by (reason) (rate(switchboard_gateway_auth_failures_total{{{NS}}}[{RATE}]))", "{{reason}}")]),
        ("Limit hits by limit", "Which limits are refusing or closing clients?", "cps", "timeseries",
         [q(f"sum by (limit) (rate(switchboard_gateway_limit_hits_total{{{NS}}}[{RATE}]))", "{{limit}}")]),
    ]),
    ("NATS", [
        ("NATS connected", "Does every pod have a working NATS connection (1) or not (0)?", "short", "timeseries",
         [q(f"min by (job, pod) (switchboard_bus_connected{{{NS}}})", "{{job}} {{pod}}")]),
        ("NATS reconnects and stalls", "How often do pods lose NATS, get it back, or find the server frozen?", "short", "timeseries",
         [q(f"sum by (pod) (increase(switchboard_bus_disconnects_total{{{NS}}}[{RATE}]))", "lost {{pod}}"),
          q(f"sum by (pod) (increase(switchboard_bus_reconnects_total{{{NS}}}[{RATE}]))", "reconnected {{pod}}"),
          q(f"sum by (pod) (increase(switchboard_bus_stalls_total{{{NS}}}[{RATE}]))", "stalled {{pod}}")]),
        ("NATS request latency p99", "How long do JetStream publishes, position and history reads and other requests take?", "s", "timeseries",
         quantiles("switchboard_bus_request_duration_seconds", "op", qs=(0.99,))),
        ("NATS requests per second", "How many requests go to NATS, by kind?", "ops", "timeseries",
         [q(f"sum by (op) (rate(switchboard_bus_request_duration_seconds_count{{{NS}}}[{RATE}]))", "{{op}}")]),
    ]),
    ("Control: registry and ring", [
        ("Replicas in the ring", "How many control replicas does each replica see (they should agree)?", "short", "timeseries",
         [q(f"max by (pod) (switchboard_control_replicas{{{NS}}})", "{{pod}}")]),
        ("Owned shards", "How are the 256 shards spread over the replicas?", "short", "timeseries",
         [q(f"sum by (pod) (switchboard_control_owned_shards{{{NS}}})", "{{pod}}")]),
        ("Registry sessions", "How many sessions does each replica hold in its shards, and how many gateways does it hear?", "short", "timeseries",
         [q(f"sum by (pod) (switchboard_control_sessions{{{NS}}})", "sessions {{pod}}"),
          q(f"max by (pod) (switchboard_control_gateways{{{NS}}})", "gateways {{pod}}")]),
        ("Ring changes and lease expiries", "Is membership churning, and did a gateway or replica die without saying goodbye?", "short", "timeseries",
         [q(f"sum by (pod) (increase(switchboard_control_ring_changes_total{{{NS}}}[{RATE}]))", "ring changes {{pod}}"),
          q(f"max (increase(switchboard_control_gateway_expirations_total{{{NS}}}[{RATE}]))", "gateway leases expired"),
          q(f"max (increase(switchboard_control_replica_expirations_total{{{NS}}}[{RATE}]))", "replica leases expired"),
          q(f"sum (increase(switchboard_control_snapshots_total{{{NS}}}[{RATE}]))", "snapshots asked")]),
    ]),
    ("Control: gRPC API", [
        ("gRPC requests by method", "Which API calls do backends make, how often?", "reqps", "timeseries",
         [q(f"sum by (method) (rate(switchboard_control_api_requests_total{{{NS}}}[{RATE}]))", "{{method}}")]),
        ("gRPC errors by code", "Which calls fail, with which status?", "reqps", "timeseries",
         [q(f'sum by (method, code) (rate(switchboard_control_api_requests_total{{{NS}, code!="OK"}}[{RATE}]))', "{{method}} {{code}}")]),
        ("gRPC server error ratio", "What share of calls fail on the server's side (the SwitchboardGrpcErrors alert)?", "percentunit", "timeseries",
         [q(f'sum (rate(switchboard_control_api_requests_total{{{NS}, code=~"UNAVAILABLE|INTERNAL|DEADLINE_EXCEEDED|UNKNOWN|DATA_LOSS"}}[{RATE}]))'
            f" / sum (rate(switchboard_control_api_requests_total{{{NS}}}[{RATE}]))", "server errors")]),
        ("gRPC latency p99 by method", "How long do API calls take (Publish: until NATS, or JetStream for a namespace with history, took it)?", "s", "timeseries",
         quantiles("switchboard_control_api_request_duration_seconds", "method", qs=(0.99,))),
    ]),
    ("Balance across gateways", [
        ("Connections per gateway: spread", "How far apart are the busiest and the quietest gateway (control's balance brings them within 10% of the mean after a rollout or scale-up)?", "short", "timeseries",
         [q(f"max (switchboard_gateway_connections{{{NS}}})", "busiest gateway"),
          q(f"avg (switchboard_gateway_connections{{{NS}}})", "mean"),
          q(f"min (switchboard_gateway_connections{{{NS}}})", "quietest gateway")]),
        ("Sessions moved by balance", "How many sessions did control ask gateways to move (each closes with 4009, reconnects and recovers), in how many rounds?", "short", "timeseries",
         [q(f"sum (increase(switchboard_control_balance_sessions_asked_total{{{NS}}}[{RATE}]))", "sessions asked to move"),
          q(f"sum (increase(switchboard_control_balance_rounds_total{{{NS}}}[{RATE}]))", "balance rounds")]),
    ]),
]


def panel(pid, title, question, unit, kind, targets, x, y):
    ds = {"type": "prometheus", "uid": "${datasource}"}
    p = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": question,
        "datasource": ds,
        "gridPos": {"h": 8, "w": 6, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [{"refId": chr(ord("A") + i), "datasource": ds, **t} for i, t in enumerate(targets)],
    }
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    return p


def dashboard():
    panels, pid, y = [], 1, 0
    for title, row in ROWS:
        panels.append({"id": pid, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, spec in enumerate(row):
            panels.append(panel(pid, *spec, x=6 * (i % 4), y=y + 8 * (i // 4)))
            pid += 1
        y += 8 * ((len(row) + 3) // 4)
    return {
        "title": "Switchboard",
        "uid": "switchboard-overview",
        "description": "Gateways, NATS and control replicas of Switchboard (deploy/README.md lists every panel).",
        "tags": ["switchboard", "websocket"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            {"name": "namespace", "label": "Namespace", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(switchboard_build_info, namespace)", "refId": "namespace"},
             "definition": "label_values(switchboard_build_info, namespace)",
             "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2, "current": {}, "hide": 0},
        ]},
        "annotations": {"list": []},
        "panels": panels,
    }


def render():
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    out = pathlib.Path(__file__).with_name("switchboard.json")
    out.write_text(render())
    print(f"wrote {out}")
