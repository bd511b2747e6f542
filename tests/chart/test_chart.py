"""The Helm chart, checked offline with the real Helm engine and the real binary.

- `helm lint --strict` and a render of the defaults and of every value set in VALUE_SETS;
- every rendered manifest validated against the Kubernetes schemas (kubernetes-validate,
  strict) of the oldest and the newest release it knows, the Prometheus Operator's two
  kinds checked by hand and with `promtool check rules`;
- the contract: each server container's args, env and mounted files (the rendered
  configuration file, the Secrets a value set says exist) handed to the real
  `switchboard config check <role>`, which must accept them and report the ports the
  pod declares; the `helm test` pod's script run against a real `switchboard dev`;
- broken value sets refused by values.schema.json or by the binary;
- generated files (the schema's `config` part, the rules and dashboard copies, the
  README's values table) in step with their sources (tests/chart/sync.py rewrites them).

Run by `make test` (tests/tools/chart-test.sh) with `SWITCHBOARD_BIN` naming the binary.
"""
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import helm_python as helm
import kubernetes_validate as kv
import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHART = ROOT / "charts" / "switchboard"
BINARY = pathlib.Path(os.environ.get("SWITCHBOARD_BIN", ROOT / "target" / "debug" / "switchboard")).resolve()
KUBE_VERSIONS = ["1.30.0", kv.latest_version()]
sys.path.insert(0, str(HERE))
import sync  # noqa: E402

# A real Ed25519 public key, for the value set that verifies tokens with a key file.
ED25519_PUB = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"
# A throw-away certificate and key for the wss value set (openssl, EC P-256, CA:FALSE).
TLS_CRT = '-----BEGIN CERTIFICATE-----\nMIIBvTCCAWKgAwIBAgIUf+4EoNlUJkC0d92yPcmF3Q3cxikwCgYIKoZIzj0EAwIw\nIjEgMB4GA1UEAwwXc3dpdGNoYm9hcmQuZXhhbXBsZS5jb20wIBcNMjYxMjAxMTAz\nNzU3WhgPMjEyNjExMDcxMDM3NTdaMCIxIDAeBgNVBAMMF3N3aXRjaGJvYXJkLmV4\nYW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqKZ/n6xTYZONEZoe\nOF4JQMOBaaeyuRh3kk2jfu9Bld48DX3ba6ZtedTvgircbFQ3CH0haaKSz+X7dy2E\nR88gVqN0MHIwHQYDVR0OBBYEFFfZ0QXdd2eRohk1HJ247Plff4PRMB8GA1UdIwQY\nMBaAFFfZ0QXdd2eRohk1HJ247Plff4PRMCIGA1UdEQQbMBmCF3N3aXRjaGJvYXJk\nLmV4YW1wbGUuY29tMAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0EAwIDSQAwRgIhAL52\nfSdMHtJ4KKR/OlgNokZ0FpfO99FU6i/RI7yXWN6/AiEAp+HCw1MjmYqnIMyFSgaE\niYx7ZWQqrA7bjB+ceYmLKwE=\n-----END CERTIFICATE-----\n'
TLS_KEY = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgnAXbLfmxPFxd271p\nIdH+lWsxka0M/6+dLGb5BTdkPi+hRANCAASopn+frFNhk40Rmh44XglAw4Fpp7K5\nGHeSTaN+70GV3jwNfdtrpm151O+CKtxsVDcIfSFpopLP5ft3LYRHzyBW\n-----END PRIVATE KEY-----\n'
# A CA and a certificate it signed for the control API (sb-switchboard-control, localhost,
# 127.0.0.1; EC P-256, valid until 2126), for the TLS value sets and the helm test over https.
CONTROL_CA = '-----BEGIN CERTIFICATE-----\nMIIBrzCCAVWgAwIBAgIUNtyKPOmEh7UCc56EcNTwVS9w0SkwCgYIKoZIzj0EAwIw\nJDEiMCAGA1UEAwwZc3dpdGNoYm9hcmQgY2hhcnQtdGVzdCBDQTAgFw0yNjEyMDEx\nNzIyMTBaGA8yMTI2MTEwNzE3MjIxMFowJDEiMCAGA1UEAwwZc3dpdGNoYm9hcmQg\nY2hhcnQtdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABLQnBK244dVT\nFq8n006tOuxgrIWOC6XhozE+9Gf1ZnGgmUppqH7ljlpLcn4LsDqiw7cVqkFDY2Qo\n6bf5NDa2EXqjYzBhMB0GA1UdDgQWBBQCOBOUjWmB5nx+qMrV4meyGjYe3jAfBgNV\nHSMEGDAWgBQCOBOUjWmB5nx+qMrV4meyGjYe3jAPBgNVHRMBAf8EBTADAQH/MA4G\nA1UdDwEB/wQEAwIBBjAKBggqhkjOPQQDAgNIADBFAiBkBnZi9gINLG20mp3BjGUe\nd7biEJky8CvQJnicjR2ozgIhAKNRa6R24fNFilb4c/Q14cTdCupZlODSEdRwRU2S\nhW4+\n-----END CERTIFICATE-----\n'
CONTROL_CRT = '-----BEGIN CERTIFICATE-----\nMIICBDCCAamgAwIBAgIUGZAOBM+O+YUEct/BiqYTtotCEkMwCgYIKoZIzj0EAwIw\nJDEiMCAGA1UEAwwZc3dpdGNoYm9hcmQgY2hhcnQtdGVzdCBDQTAgFw0yNjEyMDEx\nNzIyMTBaGA8yMTI2MTEwNzE3MjIxMFowITEfMB0GA1UEAwwWc2Itc3dpdGNoYm9h\ncmQtY29udHJvbDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABFMg7A4MtEgEyd/f\n0dQY7I0WjRnv+qtAHbIGx3b+G3aiBGGl9K33JsY4cq6gk5K3hSzC2W6conh4RCVo\nxRIPUxGjgbkwgbYwUQYDVR0RBEowSIIWc2Itc3dpdGNoYm9hcmQtY29udHJvbIId\nc2Itc3dpdGNoYm9hcmQtY29udHJvbC5ydC5zdmOCCWxvY2FsaG9zdIcEfwAAATAM\nBgNVHRMBAf8EAjAAMBMGA1UdJQQMMAoGCCsGAQUFBwMBMB0GA1UdDgQWBBTHURMH\nnH+1A6DahuBZirkUsgvPxzAfBgNVHSMEGDAWgBQCOBOUjWmB5nx+qMrV4meyGjYe\n3jAKBggqhkjOPQQDAgNJADBGAiEAsc50Id0vOKjruL+moWwcCGZWEl48kniShoNQ\nyo21LDECIQDxYQQbrIi5yoYbd+P5ngZxCaGyFz/XkJL8Qgkc2hcgyw==\n-----END CERTIFICATE-----\n'
CONTROL_KEY = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgACMxILjviAWldqzv\n2pfE0XARISS7ncl1m+QpdTWl6/2hRANCAARTIOwODLRIBMnf39HUGOyNFo0Z7/qr\nQB2yBsd2/ht2ogRhpfSt9ybGOHKuoJOSt4UswtlunKJ4eEQlaMUSD1MR\n-----END PRIVATE KEY-----\n'
CONTROL_TLS = {"tls.crt": CONTROL_CRT, "tls.key": CONTROL_KEY, "ca.crt": CONTROL_CA}
# A client certificate for the helm test pod (CN helm-test, clientAuth), from a CA of its own
# made once with openssl (valid to 2126; its key was not kept): control's client CA is the
# Secret's ca.crt, so the mutual-TLS-only case bundles both CAs there.
CLIENT_CA = '-----BEGIN CERTIFICATE-----\nMIIBrTCCAVOgAwIBAgIUW1QEtmEYs/A0TdqbDrL5LMAm0VIwCgYIKoZIzj0EAwIw\nKzEpMCcGA1UEAwwgc3dpdGNoYm9hcmQgY2hhcnQgdGVzdCBjbGllbnQgQ0EwIBcN\nMjYxMjAxMTc1MDM0WhgPMjEyNjExMDcxNzUwMzRaMCsxKTAnBgNVBAMMIHN3aXRj\naGJvYXJkIGNoYXJ0IHRlc3QgY2xpZW50IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0D\nAQcDQgAEsEZXBpKmwIGySzcPaMQ76+CexTiWSm2FKqUXG8dPIWUpup6ta8d/O6ZA\nwVHNpvm2UxrM4PPneluxd5rjIAXCHqNTMFEwHQYDVR0OBBYEFBbdjX/0froGan7x\nvtRyxQUJlryJMB8GA1UdIwQYMBaAFBbdjX/0froGan7xvtRyxQUJlryJMA8GA1Ud\nEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAKrtryIllgDpeXIeOsEc9Sin\nuGv5Ljoi6VKgdGZ3+sgEAiAM3XAqHqFLIdHQIsY/fYK1sgK10z6hv4T59IsVzE4o\nDg==\n-----END CERTIFICATE-----\n'
CLIENT_CRT = '-----BEGIN CERTIFICATE-----\nMIIBuDCCAV6gAwIBAgIUFNjnSNB1tmfp0td9O/wjNR/nJWYwCgYIKoZIzj0EAwIw\nKzEpMCcGA1UEAwwgc3dpdGNoYm9hcmQgY2hhcnQgdGVzdCBjbGllbnQgQ0EwIBcN\nMjYxMjAxMTc1MDM0WhgPMjEyNjExMDcxNzUwMzRaMBQxEjAQBgNVBAMMCWhlbG0t\ndGVzdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABBzj9i92fOtPaMC/NVJPqG5u\n1WBwwsR0qPsfqam61ELizZjUnYpzGaMz8iV0OaWSNYQaiMe1oqhAmQ2KrPcFP22j\ndTBzMAwGA1UdEwEB/wQCMAAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwDgYDVR0PAQH/\nBAQDAgeAMB0GA1UdDgQWBBQWUhrtoTeMEE5OHm6yoXAkfrAvFjAfBgNVHSMEGDAW\ngBQW3Y1/9H66Bmp+8b7UcsUFCZa8iTAKBggqhkjOPQQDAgNIADBFAiEAiGpepgq3\nChkPsQCWq53Dmz3u73cW3Tb+sWQPqadrOzoCICaUfM40a7ao/dT43qQYnyD26P/l\nsTd1A0xG00pamNKi\n-----END CERTIFICATE-----\n'
CLIENT_KEY = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1jV2C8GFNr0eFo0l\nd8360+Df1S32TpXr3cR3uaCtBKmhRANCAAQc4/YvdnzrT2jAvzVST6hubtVgcMLE\ndKj7H6mputRC4s2Y1J2KcxmjM/IldDmlkjWEGojHtaKoQJkNiqz3BT9t\n-----END PRIVATE KEY-----\n'
# A valid NATS user nkey seed (fixed bytes 1..32; nkeys' base32 with its CRC-16).
NKEY_SEED = "SUAACAQDAQCQMBYIBEFAWDANBYHRAEISCMKBKFQXDAMRUGY4DUPB6IC5CQ"
TOKEN_SECRET = {"switchboard-token": {"secret": "chart-test-secret"},
                "switchboard-api-keys": {"keys": "# rotated 2026-12\nchart-test-api-key-0123456789\n"}}

# name: (values, the Secrets that exist in the namespace {name: {key: value}})
VALUE_SETS = {
    "defaults": ({}, TOKEN_SECRET),
    "external-nats-from-a-secret": (
        {"nats": {"existingSecret": "nats-urls"}, "config": {"nats": {"subject_prefix": "prod.sb", "max_missed_pongs": 3}}},
        {**TOKEN_SECRET, "nats-urls": {"url": "nats://nats-a.example.internal:4222,nats://nats-b.example.internal:4222"}},
    ),
    "tls-on": (
        {
            "nats": {"url": "tls://nats.example.internal:4222",
                     "tls": {"caSecret": "nats-ca", "clientSecret": "nats-client-tls"},
                     "credentials": {"existingSecret": "nats-credentials"}},
            "gateway": {"tls": {"existingSecret": "switchboard-wss"}},
            "control": {"tls": {"existingSecret": "switchboard-grpc-tls", "clientCA": True, "clientCertOptional": True}},
            "ingress": {"enabled": True, "tls": [{"secretName": "switchboard-tls", "hosts": ["switchboard.example.com"]}]},
        },
        {**TOKEN_SECRET, "nats-ca": {"ca.crt": CONTROL_CA},
         "nats-client-tls": {"tls.crt": CONTROL_CRT, "tls.key": CONTROL_KEY},
         "nats-credentials": {"user": "switchboard", "password": "nats-password"},
         "switchboard-wss": {"tls.crt": TLS_CRT, "tls.key": TLS_KEY},
         "switchboard-grpc-tls": CONTROL_TLS},
    ),
    "grpc-tls-and-a-nats-creds-file": (
        {"control": {"tls": {"existingSecret": "switchboard-grpc-tls"}},
         "nats": {"credentials": {"credsSecret": "nats-creds"}}},
        {**TOKEN_SECRET, "switchboard-grpc-tls": CONTROL_TLS,
         "nats-creds": {"nats.creds": "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QifQ.e30.c2ln\n------END NATS USER JWT------\n\n"
                                      f"-----BEGIN USER NKEY SEED-----\n{NKEY_SEED}\n------END USER NKEY SEED------\n"}},
    ),
    "mutual-tls-only-api-and-a-nats-nkey-seed": (
        {"control": {"tls": {"existingSecret": "switchboard-grpc-tls", "clientCA": True}},
         "apiKeys": {"existingSecret": ""},
         "nats": {"credentials": {"nkeySecret": "nats-nkey"}}},
        {"switchboard-token": TOKEN_SECRET["switchboard-token"], "switchboard-grpc-tls": CONTROL_TLS,
         "nats-nkey": {"seed": NKEY_SEED}},
    ),
    "load-balancers-and-extra-volumes": (
        {
            "gateway": {"service": {"type": "LoadBalancer", "externalTrafficPolicy": "Local"},
                        "extraVolumes": [{"name": "geo", "configMap": {"name": "geo-data"}}],
                        "extraVolumeMounts": [{"name": "geo", "mountPath": "/etc/geo", "readOnly": True}],
                        "extraEnv": [{"name": "TZ", "value": "UTC"}]},
            "control": {"service": {"type": "LoadBalancer"},
                        "extraVolumes": [{"name": "extra-keys", "secret": {"secretName": "more-api-keys"}}],
                        "extraVolumeMounts": [{"name": "extra-keys", "mountPath": "/etc/switchboard/more-api-keys"}],
                        "extraEnv": [{"name": "TZ", "value": "UTC"}]},
            "metrics": {"serviceMonitor": {"enabled": True}},
            "networkPolicy": {"enabled": True},
        },
        {**TOKEN_SECRET, "more-api-keys": {"keys": "another-api-key-0123456789\n"}, "geo-data": {"zones": "eu-west\n"}},
    ),
    "token-keys-from-an-existing-secret": (
        {
            "auth": {"tokenSecret": {"existingSecret": ""}, "keysSecret": {"existingSecret": "jwt-keys"}},
            "config": {"auth": {"keys": [{"kid": "2026-01", "public_key_file": "/etc/switchboard/keys/jwt.pem"}],
                                "issuer": "https://auth.example.com", "algorithms": ["EdDSA"]}},
            "tests": {"enabled": False},
        },
        {"jwt-keys": {"jwt.pem": ED25519_PUB}, "switchboard-api-keys": TOKEN_SECRET["switchboard-api-keys"]},
    ),
    "servicemonitor-and-prometheusrule": (
        {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                     "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
                     "dashboard": {"enabled": True, "namespace": "monitoring"}}},
        TOKEN_SECRET,
    ),
    "hpa-off": (
        {"gateway": {"autoscaling": {"enabled": False}, "replicas": 3},
         "control": {"replicas": 3, "balance": {"windowSeconds": 3, "maxSharePercent": 50, "warmupSeconds": 30}}},
        TOKEN_SECRET,
    ),
    "ingress-on": (
        {"ingress": {"enabled": True, "hosts": [{"host": "rt.example.com", "paths": [{"path": "/ws"}]}]}},
        TOKEN_SECRET,
    ),
    "network-policy-anonymous-and-a-full-config": (
        {
            "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
            "auth": {"allowAnonymous": True, "tokenSecret": {"existingSecret": ""}},
            "apiKeys": {"existingSecret": "", "allowUnauthenticated": True},
            "gateway": {"pdb": {"enabled": False}, "extraArgs": ["--max-subscriptions=64"]},
            "control": {"balance": {"enabled": False}},
            "config": {
                "gateway": {"max_connections": 50000, "max_queue_bytes": 2097152, "handshake_timeout": "5s",
                            "client_publish": False, "max_user_id_len": 128},
                "channels": {"unknown_namespaces": "refuse", "default": {"subscribe": "anyone", "publish": "nobody"},
                             "namespaces": {"chat": {"subscribe": "authenticated", "publish": "granted"},
                                            "helm-test": {"subscribe": "anyone", "publish": "anyone"}}},
                "control": {"gateway_lease": "12s", "query_timeout": 3},
            },
        },
        {},
    ),
}

FAKE_FIELDS = {"metadata.name": "sb-switchboard-gateway-5d8f9c7b6-x2k4q", "status.podIP": "10.1.2.3",
               "metadata.namespace": "rt"}


# === helpers ===

def render(values, name="sb", namespace="rt"):
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=name, namespace=namespace)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".txt"):
            continue
        docs.extend((path, d) for d in yaml.safe_load_all(text) if d)
    return out, docs


RENDERED = {}


def rendered(set_name):
    if set_name not in RENDERED:
        RENDERED[set_name] = render(VALUE_SETS[set_name][0])
    return RENDERED[set_name]


def kinds(docs, kind):
    return [d for _, d in docs if d["kind"] == kind]


def one(docs, kind, component=None):
    found = [d for d in kinds(docs, kind)
             if component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    assert len(found) == 1, f"expected one {kind} {component or ''}, got {len(found)}"
    return found[0]


def pod_specs(docs):
    for _, d in docs:
        if d["kind"] == "Deployment":
            yield d, d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod":
            yield d, d["spec"]


def expand(value, env):
    """$(VAR) as the kubelet expands it, from the variables defined before."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def materialize(spec, container, docs, secrets, root):
    """Writes the container's mounted ConfigMaps and Secrets under `root`, builds its
    environment as the kubelet would, and returns (env, rewrite) where rewrite maps the
    pod's paths to the ones under `root`."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in kinds(docs, "ConfigMap")}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = []
    for m in container.get("volumeMounts", []):
        v = volumes[m["name"]]
        if "configMap" in v:
            name = v["configMap"]["name"]
            files = configmaps.get(name, secrets.get(name))
            assert files is not None, f"the pod mounts ConfigMap {name!r}, which neither the chart nor the value set has"
        elif "secret" in v:
            name = v["secret"]["secretName"]
            optional = v["secret"].get("optional", False)
            assert name in secrets or optional, f"the pod mounts Secret {name!r}, which the value set does not create"
            files = secrets.get(name, {})
            if "items" in v["secret"]:
                for item in v["secret"]["items"]:
                    assert item["key"] in files or optional, f"Secret {name!r} has no key {item['key']!r}"
                files = {i["path"]: files[i["key"]] for i in v["secret"]["items"] if i["key"] in files}
        elif "emptyDir" in v:
            files = {}
        else:
            raise AssertionError(f"volume {m['name']}: unsupported source {v}")
        target = root / m["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for key, text in files.items():
            (target / key).write_text(text)
        mounts.append(m["mountPath"])

    # One pass, longest path first: `root` may itself lie under a mount path (`/tmp`).
    pattern = re.compile("|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))) if mounts else None

    def rewrite(text):
        if pattern is None:
            return text
        return pattern.sub(lambda m: str(root / m.group(0).lstrip("/")), text)

    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = rewrite(expand(e["value"], env))
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = FAKE_FIELDS[e["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in e["valueFrom"]:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets.get(ref["name"], {}), \
                f"env {e['name']} reads Secret {ref['name']!r} key {ref['key']!r}, which the value set does not create"
            env[e["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            raise AssertionError(f"env {e['name']}: unsupported source {e['valueFrom']}")
    # The configuration file may name mounted files too (auth.keys[].public_key_file).
    for path in root.rglob("*.toml"):
        path.write_text(rewrite(path.read_text()))
    return env, rewrite


def config_check(role, args, env):
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run([str(BINARY), "config", "check", role, *args], env=clean, capture_output=True, text=True,
                          timeout=30)


def server_containers(docs):
    for doc, spec in pod_specs(docs):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            if c.get("args") and c["args"][0] in ("gateway", "control"):
                yield doc, spec, c


# === the tests ===

def test_the_binary_exists():
    assert BINARY.is_file(), f"{BINARY} is missing: build it first (`cargo build -p switchboard`)"


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_lint_strict_passes(set_name):
    report = helm.lint(str(CHART), VALUE_SETS[set_name][0], strict=True, kube_version=f"v{KUBE_VERSIONS[-1]}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_every_manifest_is_valid_kubernetes(set_name):
    _, docs = rendered(set_name)
    assert docs
    for path, doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            check_monitoring(doc)
            continue
        for version in KUBE_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                pytest.fail(f"{set_name}: {path} ({doc['kind']}) is invalid for Kubernetes {version}: {e.message} at {list(e.path)}")


def check_monitoring(doc):
    """The Prometheus Operator's kinds, which kubernetes-validate has no schema for."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    if doc["kind"] == "ServiceMonitor":
        ep = doc["spec"]["endpoints"]
        assert doc["spec"]["selector"]["matchLabels"] and ep and ep[0]["port"] == "admin" and ep[0]["path"] == "/metrics"
        assert set(ep[0]) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
    elif doc["kind"] == "PrometheusRule":
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            yaml.safe_dump(doc["spec"], f)
            f.flush()
            r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
    else:
        pytest.fail(f"unexpected kind {doc['kind']}")


@pytest.mark.parametrize("set_name", VALUE_SETS)
def test_the_binary_accepts_every_container(set_name, tmp_path):
    values, secrets = VALUE_SETS[set_name]
    _, docs = rendered(set_name)
    roles = []
    for i, (doc, spec, c) in enumerate(server_containers(docs)):
        role, args = c["args"][0], c["args"][1:]
        root = tmp_path / f"{i}-{role}"
        env, rewrite = materialize(spec, c, docs, secrets, root)
        r = config_check(role, [rewrite(a) for a in args], env)
        assert r.returncode == 0, f"{set_name}: `switchboard config check {role}` refused {doc['metadata']['name']}:\n{r.stderr}"
        summary = json.loads(r.stdout)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if role == "gateway":
            assert summary["gateway"]["listen"] == f"0.0.0.0:{ports['http']}"
            assert summary["admin_listen"] == f"0.0.0.0:{ports['admin']}"
            assert summary["gateway"]["node_id"] == FAKE_FIELDS["metadata.name"]
            grace = spec["terminationGracePeriodSeconds"]
            assert grace > summary["gateway"]["drain_window_ms"] / 1000 + summary["gateway"]["pong_timeout_ms"] / 1000, \
                "the grace period outlasts the drain"
        else:
            assert summary["grpc_listen"] == f"0.0.0.0:{ports['grpc']}"
            assert summary["metrics_listen"] == f"0.0.0.0:{ports['admin']}"
            assert summary["advertise_addr"] == f"{FAKE_FIELDS['status.podIP']}:{ports['grpc']}"
            # The balance values reach the binary (as flags), the chart's defaults included.
            chart_balance = yaml.safe_load((CHART / "values.yaml").read_text())["control"]["balance"]
            b = {**chart_balance, **values.get("control", {}).get("balance", {})}
            assert summary["balance"]["enabled"] is b["enabled"], set_name
            if b["enabled"]:
                assert summary["balance"] == {
                    "enabled": True, "interval_ms": b["intervalSeconds"] * 1000, "tolerance_percent": b["tolerancePercent"],
                    "min_difference": b["minDifference"], "max_share_percent": b["maxSharePercent"],
                    "window_ms": b["windowSeconds"] * 1000, "warmup_ms": b["warmupSeconds"] * 1000,
                }, set_name
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["httpGet"]["port"] in ports
        roles.append((role, summary))
    assert sorted(r for r, _ in roles) == ["control", "gateway"]
    summaries = dict(roles)
    config = values.get("config", {})
    # What the value set's configuration says is what the binary runs with.
    for section, role in (("gateway", "gateway"), ("control", "control")):
        for key, want in config.get(section, {}).items():
            summary = summaries[role]["gateway"] if role == "gateway" else summaries[role]
            if key in duration_keys(section):
                key, want = f"{key}_ms", duration_ms(want)
            assert summary[key] == want, f"{set_name}: {section}.{key} is {summary[key]}, not {want}"
    if "subject_prefix" in config.get("nats", {}):
        assert summaries["gateway"]["nats"]["subject_prefix"] == config["nats"]["subject_prefix"]
    if values.get("nats", {}).get("existingSecret"):
        assert summaries["control"]["nats"]["urls"] == secrets["nats-urls"]["url"].split(",")
    if "namespaces" in config.get("channels", {}):
        got = summaries["gateway"]["gateway"]["channels"]["namespaces"]
        assert got == config["channels"]["namespaces"]
    if "--max-subscriptions=64" in values.get("gateway", {}).get("extraArgs", []):
        assert summaries["gateway"]["gateway"]["max_subscriptions"] == 64
    assert summaries["gateway"]["gateway"]["auth"]["allow_anonymous"] is values.get("auth", {}).get("allowAnonymous", False)


def duration_keys(section):
    """The keys of a section of the binary's schema that are durations."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    props = schema["$defs"][f"{section.capitalize()}Section"]["properties"]
    return {k for k, v in props.items() if '"#/$defs/Duration"' in json.dumps(v)}


def duration_ms(d):
    if isinstance(d, int):
        return d * 1000
    number, unit = re.fullmatch(r"([0-9.]+)(ms|s|m|h)?", d).groups()
    return int(float(number) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}[unit])


BROKEN = {
    # values.schema.json refuses these before anything renders.
    "config-out-of-range": ({"config": {"gateway": {"max_user_id_len": 1000}}}, "max_user_id_len"),
    "config-unknown-key": ({"config": {"gateway": {"max_connexions": 5}}}, "max_connexions"),
    "chart-value-typo": ({"gateway": {"replica": 3}}, "replica"),
    "bad-log-format": ({"logFormat": "xml"}, "logFormat"),
    # The chart refuses this one itself (the binary would too, at start-up).
    "two-nats-credentials": ({"nats": {"credentials": {"existingSecret": "nats-credentials", "nkeySecret": "nats-nkey"}}},
                             "nats.credentials"),
    "client-ca-without-a-tls-secret": ({"control": {"tls": {"clientCA": True}}}, "control.tls.clientCA"),
    "optional-client-certificates-without-a-client-ca": (
        {"control": {"tls": {"existingSecret": "switchboard-grpc-tls", "clientCertOptional": True}}},
        "control.tls.clientCertOptional"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_broken_values_are_refused_by_the_schema(case):
    values, named = BROKEN[case]
    with pytest.raises(helm.HelmError) as e:
        render(values)
    assert named in str(e.value), str(e.value)


def test_a_config_the_schema_allows_but_the_binary_refuses_fails_the_contract(tmp_path):
    # A gateway lease over 15 s is a valid duration to the schema; the binary refuses it.
    values = {"config": {"control": {"gateway_lease": "20s"}}}
    _, docs = render(values)
    refused = []
    for i, (doc, spec, c) in enumerate(server_containers(docs)):
        env, rewrite = materialize(spec, c, docs, TOKEN_SECRET, tmp_path / str(i))
        r = config_check(c["args"][0], [rewrite(a) for a in c["args"][1:]], env)
        if r.returncode != 0:
            assert r.returncode == 64 and "gateway_lease" in r.stderr, r.stderr
            refused.append(c["args"][0])
    assert refused == ["control"]


def test_the_nats_ca_and_client_certificate_go_to_the_nats_client_only():
    # SSL_CERT_FILE would replace the system roots of every https call in the process (a
    # JWKS endpoint at a public identity provider among them): the CA is a NATS flag.
    _, docs = rendered("tls-on")
    containers = list(server_containers(docs))
    assert len(containers) == 2
    for _, spec, c in containers:
        assert not [e for e in c.get("env", []) if e["name"] == "SSL_CERT_FILE"], c["name"]
        assert "--nats-tls-ca=/etc/switchboard/nats-ca/ca.crt" in c["args"], c["args"]
        assert "--nats-tls-cert=/etc/switchboard/nats-client-tls/tls.crt" in c["args"], c["args"]
        assert "--nats-tls-key=/etc/switchboard/nats-client-tls/tls.key" in c["args"], c["args"]
    for set_name in VALUE_SETS:
        for _, spec, c in server_containers(rendered(set_name)[1]):
            assert "SSL_CERT_FILE" not in json.dumps(c), f"{set_name}: {c['name']} sets SSL_CERT_FILE"


def test_the_control_api_serves_tls_from_its_secret():
    want = {
        "tls-on": ["--tls-cert=/etc/switchboard/tls/tls.crt", "--tls-key=/etc/switchboard/tls/tls.key",
                   "--tls-client-ca=/etc/switchboard/tls/ca.crt", "--tls-client-cert-optional"],
        "grpc-tls-and-a-nats-creds-file": ["--tls-cert=/etc/switchboard/tls/tls.crt", "--tls-key=/etc/switchboard/tls/tls.key"],
        "mutual-tls-only-api-and-a-nats-nkey-seed": ["--tls-cert=/etc/switchboard/tls/tls.crt",
                                                     "--tls-key=/etc/switchboard/tls/tls.key",
                                                     "--tls-client-ca=/etc/switchboard/tls/ca.crt"],
        "defaults": [],
    }
    for set_name, flags in want.items():
        out, docs = rendered(set_name)
        args = one(docs, "Deployment", "control")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert [a for a in args if a.startswith("--tls-")] == flags, set_name
        notes = out["switchboard/templates/NOTES.txt"]
        scheme = "https" if flags else "http"
        assert f"{scheme}://sb-switchboard-control.rt:50051" in notes, notes
        pods = kinds(docs, "Pod")
        if set_name == "mutual-tls-only-api-and-a-nats-nkey-seed":
            assert not pods, "the helm test pod has no client certificate for an API that requires one"
        elif set_name != "tls-on":  # wss on the gateways: no test pod either
            (pod,) = pods
            script = pod["spec"]["containers"][0]["args"][0]
            assert f"--grpc {scheme}://sb-switchboard-control:50051" in script
            if flags:
                # The test pod sees only the Secret's CA, never the server's private key.
                (vol,) = [v for v in pod["spec"]["volumes"] if v["name"] == "control-ca"]
                assert vol["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}] and vol["secret"]["optional"]
    # NOTES shows how to send the API key of the default Secret.
    notes = rendered("defaults")[0]["switchboard/templates/NOTES.txt"]
    assert '--api-key "$(kubectl -n rt get secret switchboard-api-keys' in notes, notes


def test_the_admin_ports_stay_off_load_balancers():
    for set_name in VALUE_SETS:
        _, docs = rendered(set_name)
        services = kinds(docs, "Service")
        for s in services:
            names = {p["name"] for p in s["spec"]["ports"]}
            metrics = s["metadata"]["labels"].get("switchboard/service") == "metrics"
            if metrics:
                assert s["spec"]["type"] == "ClusterIP" and names == {"admin"}, (set_name, s["metadata"]["name"])
            else:
                assert "admin" not in names, f"{set_name}: {s['metadata']['name']} ({s['spec']['type']}) publishes the admin port"
        by_component = {}
        for s in services:
            if s["metadata"]["labels"].get("switchboard/service") == "metrics":
                by_component[s["metadata"]["labels"]["app.kubernetes.io/component"]] = s
        assert sorted(by_component) == ["control", "gateway"], set_name
        # Each ServiceMonitor selects exactly its component's metrics Service, by labels.
        for m in kinds(docs, "ServiceMonitor"):
            sel = m["spec"]["selector"]["matchLabels"]
            chosen = [s["metadata"]["name"] for s in services if sel.items() <= s["metadata"]["labels"].items()]
            component = m["metadata"]["labels"]["app.kubernetes.io/component"]
            assert chosen == [by_component[component]["metadata"]["name"]], (set_name, chosen)
        # The metrics Services pick the same pods as the components' Deployments, whose
        # `admin` port they target; the NetworkPolicy admits that port.
        for component, s in by_component.items():
            d = one(docs, "Deployment", component)
            assert s["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
            ports = d["spec"]["template"]["spec"]["containers"][0]["ports"]
            assert s["spec"]["ports"][0]["targetPort"] in {p["name"] for p in ports}
        for np in kinds(docs, "NetworkPolicy"):
            assert any(p["port"] == "admin" for rule in np["spec"]["ingress"] for p in rule["ports"])
    _, docs = rendered("load-balancers-and-extra-volumes")
    assert sorted(s["spec"]["type"] for s in kinds(docs, "Service")) == ["ClusterIP", "ClusterIP", "LoadBalancer", "LoadBalancer"]


def test_extra_volumes_mounts_and_env_reach_the_containers():
    values, _ = VALUE_SETS["load-balancers-and-extra-volumes"]
    _, docs = rendered("load-balancers-and-extra-volumes")
    for component in ("gateway", "control"):
        spec = one(docs, "Deployment", component)["spec"]["template"]["spec"]
        c = spec["containers"][0]
        for v in values[component]["extraVolumes"]:
            assert v in spec["volumes"]
        for m in values[component]["extraVolumeMounts"]:
            assert m in c["volumeMounts"]
        for e in values[component].get("extraEnv", []):
            assert e in c["env"]


def test_no_value_set_renders_a_secret():
    for set_name in VALUE_SETS:
        _, docs = rendered(set_name)
        assert not kinds(docs, "Secret"), f"{set_name} renders a Secret: the chart must only read existing ones"


def test_gateways_roll_out_without_dropping_traffic():
    _, docs = rendered("defaults")
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]
    d = one(docs, "Deployment", "gateway")
    # One gateway drains at a time: a surge of one new pod, none taken away before it is
    # ready, and a new pod available only once the old one stopped before it has drained.
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1
    drained = values["preStopSeconds"] + values["drainWindowSeconds"]
    assert d["spec"]["minReadySeconds"] == drained + values["drainGapSeconds"] > drained
    assert "replicas" not in d["spec"], "the HPA owns the replica count"
    spec = d["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(values["preStopSeconds"])]
    want = values["preStopSeconds"] + values["drainWindowSeconds"] + values["pongTimeoutSeconds"] + values["terminationMarginSeconds"]
    assert spec["terminationGracePeriodSeconds"] == want
    assert want >= values["preStopSeconds"] + values["drainWindowSeconds"] + values["pongTimeoutSeconds"], \
        "SIGKILL never cuts a drain short"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {t["topologyKey"] for t in spec["topologySpreadConstraints"]} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(t["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway" for t in spec["topologySpreadConstraints"])
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert one(docs, "PodDisruptionBudget", "gateway")["spec"]["maxUnavailable"] == 1
    _, off = rendered("hpa-off")
    assert not kinds(off, "HorizontalPodAutoscaler")
    assert one(off, "Deployment", "gateway")["spec"]["replicas"] == 3


def test_every_pod_runs_locked_down():
    for set_name in VALUE_SETS:
        _, docs = rendered(set_name)
        for doc, spec in pod_specs(docs):
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["seccompProfile"]["type"] == "RuntimeDefault", doc["metadata"]["name"]
            for c in spec["containers"]:
                sc = c["securityContext"]
                assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert "resources" in c


def test_a_config_change_rolls_the_pods():
    def checksum(values):
        _, docs = render(values)
        return one(docs, "Deployment", "gateway")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum({}) != checksum({"config": {"gateway": {"max_connections": 10}}})
    assert checksum({}) == checksum({"gateway": {"replicas": 7}})


def test_the_prometheus_rule_and_the_dashboard_are_the_shipped_files():
    _, docs = rendered("servicemonitor-and-prometheusrule")
    rule = one(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
    board = [d for d in kinds(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")][0]
    assert board["metadata"]["namespace"] == "monitoring" and board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["switchboard.json"]) == json.loads((ROOT / "deploy" / "grafana" / "switchboard.json").read_text())
    monitors = kinds(docs, "ServiceMonitor")
    jobs = sorted(m["spec"]["endpoints"][0]["relabelings"][0]["replacement"] for m in monitors)
    assert jobs == ["switchboard-control", "switchboard-gateway"], "the jobs the rules and dashboard expect"
    rules_text = (ROOT / "deploy" / "prometheus" / "rules.yaml").read_text()
    for job in jobs:
        assert f'job="{job}"' in rules_text


def test_generated_files_are_in_step_with_their_sources():
    stale = [str(p.relative_to(ROOT)) for p, text in sync.expected_files(BINARY).items() if p.read_text() != text]
    assert not stale, f"run `make chart-sync` (tests/chart/sync.py): {stale} differ from their sources"


def test_values_yaml_documents_every_value_and_the_readme_lists_them():
    documented = sync.documented_values()
    schema = json.loads((CHART / "values.schema.json").read_text())

    def leaves(node, prefix=""):
        """Every value's path; a group of values (an object the schema closes) is not
        one, unless values.yaml documents it as a whole (`resources`)."""
        for key, sub in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            if key in ("config", "global") and not prefix:
                continue
            if sub.get("additionalProperties") is False and path not in documented:
                yield from leaves(sub, path + ".")
            else:
                yield path

    missing = [p for p in leaves(schema) if p not in documented]
    assert not missing, f"values.yaml keys without a comment: {missing}"
    readme = (CHART / "README.md").read_text()
    for path in documented:
        assert f"`{path}`" in readme, f"charts/switchboard/README.md does not list {path}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_helm_test_pod_subscribes_and_publishes_through_a_real_node(tmp_path):
    _, docs = rendered("defaults")
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["command"] == ["/bin/sh", "-ec"]
    script = c["args"][0]
    http, grpc = free_port(), free_port()
    node = subprocess.Popen([str(BINARY), "dev", "--listen", f"127.0.0.1:{http}", "--grpc-listen", f"127.0.0.1:{grpc}",
                             "--token-secret", TOKEN_SECRET["switchboard-token"]["secret"], "--no-page"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", grpc), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "switchboard dev did not start"
                time.sleep(0.05)
        script = (script.replace("ws://sb-switchboard-gateway:8080/ws", f"ws://127.0.0.1:{http}/ws")
                  .replace("http://sb-switchboard-control:50051", f"http://127.0.0.1:{grpc}")
                  .replace("/tmp/", f"{tmp_path}/"))
        assert str(http) in script and str(grpc) in script, "the script names the release's Services"
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "switchboard").symlink_to(BINARY)
        env, _ = materialize(pod["spec"], c, docs, TOKEN_SECRET, tmp_path / "root")
        env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        r = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        assert '"helm":"test"' in r.stdout, r.stdout
    finally:
        node.terminate()
        node.wait(timeout=20)


def wait_ready(url, procs, deadline_s=30):
    import urllib.request
    deadline = time.time() + deadline_s
    while True:
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.time() < deadline, f"{url} not ready within {deadline_s} s"
        time.sleep(0.1)


TLS_API_CASES = {
    # Mutual TLS optional, API keys from their Secret: the pod sends a key.
    "keys": ({"control": {"tls": {"existingSecret": "switchboard-grpc-tls", "clientCA": True, "clientCertOptional": True}}},
             {**TOKEN_SECRET, "switchboard-grpc-tls": CONTROL_TLS}),
    # Only client certificates (no API keys at all): the pod presents tests.clientCertSecret.
    "client-certificate": (
        {"control": {"tls": {"existingSecret": "switchboard-grpc-tls", "clientCA": True}},
         "apiKeys": {"existingSecret": ""}, "tests": {"clientCertSecret": "switchboard-test-client"}},
        {**TOKEN_SECRET, "switchboard-grpc-tls": {**CONTROL_TLS, "ca.crt": CONTROL_CA + CLIENT_CA},
         "switchboard-test-client": {"tls.crt": CLIENT_CRT, "tls.key": CLIENT_KEY}}),
}


@pytest.mark.parametrize("case", sorted(TLS_API_CASES))
def test_the_helm_test_pod_passes_against_the_rendered_pods_with_a_tls_api(tmp_path, case):
    """The release's own control and gateway command lines (a TLS gRPC API, with API keys
    from the Secret and mutual TLS optional, or with client certificates only) run against a
    real nats-server, and the helm test pod's script subscribes and publishes through them
    over https."""
    values, secrets = TLS_API_CASES[case]
    _, docs = render(values)
    ports = {name: free_port() for name in ("nats", "http", "gw-admin", "grpc", "ctl-admin")}
    local = {"--listen=0.0.0.0:8080": f"--listen=127.0.0.1:{ports['http']}",
             "--admin-listen=0.0.0.0:9091": f"--admin-listen=127.0.0.1:{ports['gw-admin']}",
             "--grpc-listen=0.0.0.0:50051": f"--grpc-listen=127.0.0.1:{ports['grpc']}",
             "--admin-listen=0.0.0.0:9090": f"--admin-listen=127.0.0.1:{ports['ctl-admin']}",
             "--nats=nats://nats:4222": f"--nats=nats://127.0.0.1:{ports['nats']}"}
    nats_bin = shutil.which("nats-server") or "/usr/sbin/nats-server"
    procs = {"nats-server": subprocess.Popen([nats_bin, "-a", "127.0.0.1", "-p", str(ports["nats"]), "-js",
                                              "-sd", str(tmp_path / "js")],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)}
    logs = {}
    try:
        for i, (doc, spec, c) in enumerate(server_containers(docs)):
            env, rewrite = materialize(spec, c, docs, secrets, tmp_path / f"{i}-{c['name']}")
            args = [local.get(a, rewrite(a)) for a in c["args"]]
            assert not [a for a in args if "0.0.0.0" in a or "nats:4222" in a], args
            clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **env}
            logs[c["name"]] = open(tmp_path / f"{c['name']}.log", "w")
            procs[c["name"]] = subprocess.Popen([str(BINARY), *args], env=clean, stdout=logs[c["name"]], stderr=subprocess.STDOUT)
        assert sorted(procs) == ["control", "gateway", "nats-server"]
        wait_ready(f"http://127.0.0.1:{ports['ctl-admin']}/readyz", procs)
        wait_ready(f"http://127.0.0.1:{ports['gw-admin']}/readyz", procs)

        pod = one(docs, "Pod")
        c = pod["spec"]["containers"][0]
        env, rewrite = materialize(pod["spec"], c, docs, secrets, tmp_path / "pod")
        script = rewrite(c["args"][0])
        assert "--grpc https://sb-switchboard-control:50051" in script, script
        script = (script.replace("ws://sb-switchboard-gateway:8080/ws", f"ws://127.0.0.1:{ports['http']}/ws")
                  .replace("https://sb-switchboard-control:50051", f"https://localhost:{ports['grpc']}"))
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "switchboard").symlink_to(BINARY)
        env["PATH"] = f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        r = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        assert '"helm":"test"' in r.stdout, r.stdout
        if case == "client-certificate":
            # Without the certificate the same call is refused: the script passed because
            # it presented one.
            ca = tmp_path / "ca.crt"
            ca.write_text(CONTROL_CA)
            bare = subprocess.run([str(BINARY), "pub", "--grpc", f"https://localhost:{ports['grpc']}", "--ca", str(ca),
                                   "--timeout", "2s", "helm-test:x", "{}"], capture_output=True, text=True, timeout=30)
            assert bare.returncode != 0 and "--cert and --key" in bare.stderr, bare.stdout + bare.stderr
        # Plain gRPC to the TLS port fails, and so does https without the Secret's CA: the
        # script passed because it used both.
        plain = subprocess.run([str(BINARY), "pub", "--grpc", f"http://127.0.0.1:{ports['grpc']}", "--timeout", "2s",
                                "--api-key", "chart-test-api-key-0123456789", "helm-test:x", "{}"],
                               capture_output=True, text=True, timeout=30)
        assert plain.returncode != 0, plain.stdout
        untrusted = subprocess.run([str(BINARY), "pub", "--grpc", f"https://localhost:{ports['grpc']}", "--timeout", "2s",
                                    "--api-key", "chart-test-api-key-0123456789", "helm-test:x", "{}"],
                                   capture_output=True, text=True, timeout=30)
        assert untrusted.returncode != 0, untrusted.stdout
    finally:
        for name, proc in procs.items():
            proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for f in logs.values():
            f.close()


def test_deploy_readme_lists_every_panel_and_alert():
    readme = (ROOT / "deploy" / "README.md").read_text()
    board = json.loads((ROOT / "deploy" / "grafana" / "switchboard.json").read_text())
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert f"| {panel['title']} | {panel['description']} |" in readme, f"deploy/README.md lacks panel {panel['title']!r}"
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert f"### {rule['alert']}\n" in readme, f"deploy/README.md has no runbook for {rule['alert']}"
            assert rule["annotations"]["runbook"] == f"deploy/README.md#{rule['alert'].lower()}"
