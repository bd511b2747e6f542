#!/usr/bin/env python3
"""Brings the chart's generated parts in step with their sources (`make chart-sync`):

- values.schema.json: `properties.config` and `$defs` from `switchboard config schema`;
- files/rules.yaml from deploy/prometheus/rules.yaml;
- deploy/grafana/switchboard.json from deploy/grafana/build.py, and files/switchboard.json from it;
- the values table of charts/switchboard/README.md from the `# --` comments of values.yaml.

The chart tests (test_chart.py) fail, naming this script, when any of them drifts.
"""
import json
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "switchboard"
sys.path.insert(0, str(ROOT / "deploy" / "grafana"))
import build as dashboard  # noqa: E402


def binary_schema(binary):
    out = subprocess.run([str(binary), "config", "schema"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def values_schema(chart_schema, config_schema):
    """The chart's schema with the binary's: its root as `config`, its `$defs` at the root
    (the binary's `$ref`s point at `#/$defs/…`)."""
    schema = dict(chart_schema)
    schema["properties"] = dict(schema["properties"])
    schema["properties"]["config"] = {k: v for k, v in config_schema.items() if k not in ("$schema", "$defs")}
    schema["$defs"] = config_schema.get("$defs", {})
    return schema


def documented_values():
    """{dotted path: description} for every key of values.yaml with a `# --` comment."""
    out, stack, pending = {}, [], None
    for line in (CHART / "values.yaml").read_text().splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("# --"):
            pending = stripped[4:].strip()
            continue
        if stripped.startswith("#") and pending is not None:
            pending += " " + stripped.lstrip("#").strip()
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*):", stripped)
        if m and not stripped.startswith("-"):
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, m.group(1)))
            if pending is not None:
                out[".".join(k for _, k in stack)] = pending
        if stripped:
            pending = None
    return out


def values_table():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for path, text in documented_values().items():
        node = values
        for part in path.split("."):
            node = node[part]
        default = json.dumps(node, separators=(",", ":"))
        if len(default) > 60:
            default = "see values.yaml"
        text = text.replace("|", "\\|")
        rows.append(f"| `{path}` | `{default}` | {text} |")
    return "\n".join(rows)


def readme(text):
    start, end = "<!-- values:start -->", "<!-- values:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{values_table()}\n{end}{tail}"


def expected_files(binary):
    """Every generated file's path and the text it should have."""
    chart_schema = json.loads((CHART / "values.schema.json").read_text())
    schema = values_schema(chart_schema, binary_schema(binary))
    board = dashboard.render()
    return {
        CHART / "values.schema.json": json.dumps(schema, indent=2, ensure_ascii=False) + "\n",
        CHART / "files" / "rules.yaml": (ROOT / "deploy" / "prometheus" / "rules.yaml").read_text(),
        ROOT / "deploy" / "grafana" / "switchboard.json": board,
        CHART / "files" / "switchboard.json": board,
        CHART / "README.md": readme((CHART / "README.md").read_text()),
    }


if __name__ == "__main__":
    binary = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "target" / "debug" / "switchboard")
    for path, text in expected_files(binary).items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"sync: wrote {path.relative_to(ROOT)}")
