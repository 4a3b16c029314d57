#!/usr/bin/env python3
"""Checks the deployment files under deploy/ against the real daemon.

  python3 tests/deploy/check_deploy.py --bin-dir build/bin

1. every .yaml/.yml (all documents) and .json under deploy/ parses;
2. the Kubernetes manifests hang together: volume mounts name volumes, ConfigMap and
   Secret references (and their keys) exist under deploy/k8s, probe ports name container
   ports, $(VAR) in args is in the container's env, selectors match template labels;
3. every adaptcache_* metric used by deploy/prometheus/alerts.yml and the Grafana
   dashboard is exported by a real adaptcached (started from --bin-dir on a temporary
   socket and an ephemeral metrics port, with an SSD tier and the adaptive policy, so the
   SSD and mover metrics exist), and histogram_quantile inputs are histograms;
4. every adaptcached flag in the manifests and the Dockerfile is in `adaptcached --help`,
   the CLI flags of the HEALTHCHECK in `adaptcache --help`, and every adaptcached.toml
   (ConfigMaps, deploy/adaptcached.toml) loads with `adaptcached --config F --print-config`;
5. the Dockerfile has a HEALTHCHECK and a non-root USER; prometheus.yml's rule_files
   exist; `promtool check rules` passes when promtool is installed.

Exit status 0 = all checks pass.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from daemon import Daemon  # noqa: E402  (tests/python/daemon.py)

try:
    import yaml
except ImportError:  # Debian: python3-yaml
    print("check_deploy: python3-yaml is missing (apt-get install python3-yaml)", file=sys.stderr)
    sys.exit(1)

METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])adaptcache_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count")
WORKLOADS = {"Deployment", "DaemonSet", "StatefulSet", "Job", "Pod"}


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def ok(self, what: str) -> None:
        print(f"ok    {what}")

    def fail(self, what: str, details: list[str] | None = None) -> None:
        print(f"FAIL  {what}")
        for d in details or []:
            print(f"        {d}")
        self.failures.append(what)

    def check(self, what: str, problems: list[str]) -> None:
        if problems:
            self.fail(what, problems)
        else:
            self.ok(what)


# ---------------------------------------------------------------- files

def deploy_files(deploy: str, exts: tuple[str, ...]) -> list[str]:
    out = []
    for root, _, names in os.walk(deploy):
        out += [os.path.join(root, n) for n in names if n.endswith(exts)]
    return sorted(out)


def parse_all(deploy: str, rep: Report) -> dict[str, list]:
    docs: dict[str, list] = {}
    problems = []
    for path in deploy_files(deploy, (".yaml", ".yml", ".json")):
        rel = os.path.relpath(path, deploy)
        try:
            with open(path, encoding="utf-8") as f:
                if path.endswith(".json"):
                    docs[rel] = [json.load(f)]
                else:
                    docs[rel] = [d for d in yaml.safe_load_all(f) if d is not None]
        except (yaml.YAMLError, json.JSONDecodeError, OSError) as e:
            problems.append(f"{rel}: {e}")
    n = sum(len(v) for v in docs.values())
    rep.check(f"parse: {len(docs)} files, {n} documents ({', '.join(sorted(docs))})", problems)
    return docs


# ---------------------------------------------------------------- kubernetes

def pod_spec(doc: dict) -> dict | None:
    if doc.get("kind") == "Pod":
        return doc.get("spec")
    return ((doc.get("spec") or {}).get("template") or {}).get("spec")


def containers_of(ps: dict) -> list[dict]:
    return list(ps.get("initContainers") or []) + list(ps.get("containers") or [])


def k8s_docs(docs: dict[str, list]) -> list[tuple[str, dict]]:
    return [(f, d) for f, ds in docs.items() if f.startswith("k8s" + os.sep) for d in ds]


def check_k8s(docs: dict[str, list], rep: Report) -> None:
    kd = k8s_docs(docs)
    problems = []
    configmaps, secrets = {}, {}
    for f, d in kd:
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") or not (d.get("metadata") or {}).get("name"):
            problems.append(f"{f}: a document without apiVersion, kind or metadata.name")
            continue
        if d["kind"] == "ConfigMap":
            configmaps[d["metadata"]["name"]] = set((d.get("data") or {}).keys())
        if d["kind"] == "Secret":
            secrets[d["metadata"]["name"]] = set((d.get("data") or {}).keys()) | set((d.get("stringData") or {}).keys())
    workloads = 0
    for f, d in kd:
        if not isinstance(d, dict) or d.get("kind") not in WORKLOADS:
            continue
        workloads += 1
        where = f"{f} {d['kind']}/{d['metadata']['name']}"
        ps = pod_spec(d) or {}
        if d["kind"] != "Pod":
            sel = ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            labels = (((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
            if d["kind"] != "Job" and (not sel or any(labels.get(k) != v for k, v in sel.items())):
                problems.append(f"{where}: selector {sel} does not match the template labels {labels}")
        volumes = {v["name"]: v for v in ps.get("volumes") or []}
        for v in volumes.values():
            if "configMap" in v:
                name = v["configMap"].get("name")
                if name not in configmaps:
                    problems.append(f"{where}: volume {v['name']} names ConfigMap {name}, not under deploy/k8s")
                for it in v["configMap"].get("items") or []:
                    if it["key"] not in configmaps.get(name, set()):
                        problems.append(f"{where}: ConfigMap {name} has no key {it['key']}")
            if "secret" in v:
                name = v["secret"].get("secretName")
                if name not in secrets:
                    problems.append(f"{where}: volume {v['name']} names Secret {name}, not under deploy/k8s")
                for it in v["secret"].get("items") or []:
                    if it["key"] not in secrets.get(name, set()):
                        problems.append(f"{where}: Secret {name} has no key {it['key']}")
        used = set()
        ports_all = set()
        for c in containers_of(ps):
            cw = f"{where} container {c.get('name')}"
            for m in c.get("volumeMounts") or []:
                used.add(m["name"])
                if m["name"] not in volumes:
                    problems.append(f"{cw}: volumeMount {m['name']} names no volume")
                sub = m.get("subPath")
                v = volumes.get(m["name"]) or {}
                if sub and "configMap" in v and sub not in configmaps.get(v["configMap"].get("name"), set()):
                    problems.append(f"{cw}: subPath {sub} is no key of ConfigMap {v['configMap'].get('name')}")
            env = {e["name"]: e for e in c.get("env") or []}
            for e in env.values():
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and ref["key"] not in secrets.get(ref["name"], set()):
                    problems.append(f"{cw}: env {e['name']} names Secret {ref['name']} key {ref['key']}, which does not exist")
                ref = (e.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and ref["key"] not in configmaps.get(ref["name"], set()):
                    problems.append(f"{cw}: env {e['name']} names ConfigMap {ref['name']} key {ref['key']}, which does not exist")
            for a in list(c.get("args") or []) + list(c.get("command") or []):
                for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(a)):
                    if var not in env:
                        problems.append(f"{cw}: $({var}) in args is not in its env")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
            ports_all |= set(ports.values())
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                hg = (c.get(probe) or {}).get("httpGet")
                if not hg:
                    continue
                port = hg.get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{cw}: {probe} port {port} names no container port")
                elif isinstance(port, int) and port not in ports.values():
                    problems.append(f"{cw}: {probe} port {port} is no container port")
        for name in volumes:
            if name not in used:
                problems.append(f"{where}: volume {name} is mounted nowhere")
        ann = ((((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations") or {})
        if ann.get("prometheus.io/scrape") == "true" and int(ann.get("prometheus.io/port", "0")) not in ports_all:
            problems.append(f"{where}: prometheus.io/port {ann.get('prometheus.io/port')} is no container port")
    rep.check(f"k8s: {len(kd)} documents, {workloads} workloads, ConfigMaps {sorted(configmaps)}, Secrets {sorted(secrets)}", problems)


# ---------------------------------------------------------------- metrics

def strings_under(obj, keys: set[str]):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in keys and isinstance(v, str):
                yield v
            else:
                yield from strings_under(v, keys)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_under(v, keys)


def used_metrics(docs: dict[str, list]) -> dict[str, set[str]]:
    """metric name -> the files whose expressions use it."""
    used: dict[str, set[str]] = {}
    for f, ds in docs.items():
        if f.startswith("prometheus" + os.sep) and f.endswith(("alerts.yml", "alerts.yaml")):
            exprs = [r.get("expr", "") for d in ds for g in (d or {}).get("groups", []) for r in g.get("rules", [])]
        elif f.startswith("grafana" + os.sep):
            exprs = list(strings_under(ds, {"expr", "definition"}))
            exprs += [q["query"] for q in strings_under_dicts(ds) if isinstance(q.get("query"), str)]
        else:
            continue
        for e in exprs:
            for m in METRIC_RE.findall(str(e)):
                used.setdefault(m, set()).add(f)
    return used


def strings_under_dicts(obj):
    """Templating variables' query objects ({"query": "..."})."""
    if isinstance(obj, dict):
        if obj.get("type") == "query" and isinstance(obj.get("query"), dict):
            yield obj["query"]
        for v in obj.values():
            yield from strings_under_dicts(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from strings_under_dicts(v)


def histogram_inputs(docs: dict[str, list]) -> set[str]:
    out = set()
    for f, ds in docs.items():
        if not (f.startswith("prometheus" + os.sep) or f.startswith("grafana" + os.sep)):
            continue
        for e in strings_under(ds, {"expr"}):
            for m in re.finditer(r"histogram_quantile\s*\(", e):
                out |= {n for n in METRIC_RE.findall(e[m.end():]) if n.endswith("_bucket")}
    return out


def parse_exposition(text: str) -> tuple[dict[str, str], set[str]]:
    families: dict[str, str] = {}
    samples: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                families[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return families, samples


def deploy_daemon(bin_dir: str, ssd_dir: str) -> Daemon:
    """A daemon with an SSD tier and a policy, so every metric family is exported."""
    return Daemon(bin_dir, extra_args=["--mlock", "false", "--ssd-dir", os.path.join(ssd_dir, "ssd"),
                                       "--ssd-segment-bytes", "4MiB", "--ssd-segment-count", "4",
                                       "--policy", "adaptive"], timeout_s=60)


def check_metrics(docs: dict[str, list], bin_dir: str, work_dir: str | None, rep: Report) -> None:
    used = used_metrics(docs)
    ssd = tempfile.mkdtemp(prefix="ac-deploy-ssd-", dir=work_dir)  # O_DIRECT: not tmpfs
    d = deploy_daemon(bin_dir, ssd)
    try:
        d.start()
        text = d.scrape()
        health = d.scrape("/healthz")
    except (RuntimeError, OSError) as e:
        rep.fail("metrics: start adaptcached and scrape /metrics", str(e).splitlines()[-20:])
        return
    finally:
        d.stop()
        shutil.rmtree(ssd, ignore_errors=True)
    families, samples = parse_exposition(text)
    rep.check("metrics: /healthz answers ok", [] if health.strip() == "ok" else [f"/healthz said {health!r}"])
    exported = set(families) | samples
    for name, typ in families.items():
        if typ in ("histogram", "summary"):
            exported |= {name + s for s in SUFFIXES}
    missing = {}
    for m, files in sorted(used.items()):
        if m not in exported:
            base = next((m[: -len(s)] for s in SUFFIXES if m.endswith(s)), m)
            missing.setdefault(base, set()).update(files)
    print(f"      adaptcached exports {len(families)} metric families; deploy files use {len(used)} names")
    rep.check(f"metrics: every name used by the alerts and the dashboard is exported ({len(used)} names)",
              [f"{m} (used in {', '.join(sorted(f))})" for m, f in sorted(missing.items())])
    not_hist = []
    for b in sorted(histogram_inputs(docs)):
        fam = b[: -len("_bucket")]
        if fam in families and families[fam] != "histogram":
            not_hist.append(f"{b}: {fam} is a {families[fam]}, not a histogram")
    rep.check("metrics: histogram_quantile is applied to histograms only", not_hist)


# ---------------------------------------------------------------- flags and configs

def help_flags(binary: str, *args: str) -> set[str]:
    out = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", out))


def daemon_arg_lists(docs: dict[str, list], deploy: str) -> list[tuple[str, list[str]]]:
    """(where, argv) of every adaptcached invocation in the manifests and the Dockerfile."""
    out = []
    for f, d in k8s_docs(docs):
        if not isinstance(d, dict) or d.get("kind") not in WORKLOADS:
            continue
        for c in containers_of(pod_spec(d) or {}):
            if "adaptcache" in str(c.get("image", "")) and not c.get("command"):
                out.append((f"{f} container {c.get('name')}", [str(a) for a in c.get("args") or []]))
    df = os.path.join(deploy, "Dockerfile")
    if os.path.exists(df):
        for instr in ("ENTRYPOINT", "CMD"):
            for m in re.finditer(rf"^{instr}\s+(\[.*\])\s*$", open(df, encoding="utf-8").read(), re.M):
                out.append((f"Dockerfile {instr}", [a for a in json.loads(m.group(1)) if a != "adaptcached"]))
    return out


def config_tomls(docs: dict[str, list], deploy: str) -> list[tuple[str, str]]:
    out = []
    for f, d in k8s_docs(docs):
        if isinstance(d, dict) and d.get("kind") == "ConfigMap":
            for k, v in (d.get("data") or {}).items():
                if k.endswith(".toml"):
                    out.append((f"{f} ConfigMap/{d['metadata']['name']} {k}", v))
    for path in deploy_files(deploy, (".toml",)):
        with open(path, encoding="utf-8") as fh:
            out.append((os.path.relpath(path, deploy), fh.read()))
    return out


def check_flags_and_configs(docs: dict[str, list], deploy: str, bin_dir: str, rep: Report) -> None:
    daemon = os.path.join(bin_dir, "adaptcached")
    cli = os.path.join(bin_dir, "adaptcache")
    known = help_flags(daemon)
    problems, n = [], 0
    for where, argv in daemon_arg_lists(docs, deploy):
        for a in argv:
            if a.startswith("--"):
                flag = a.split("=", 1)[0]
                n += 1
                if flag not in known:
                    problems.append(f"{where}: {flag} is not an adaptcached flag")
    rep.check(f"flags: {n} adaptcached flags in the manifests and the Dockerfile exist", problems)

    problems = []
    df = os.path.join(deploy, "Dockerfile")
    hc = re.search(r"^HEALTHCHECK\b.*?CMD\s+(\[[^\n]*\])\s*$", open(df, encoding="utf-8").read(), re.M | re.S) if os.path.exists(df) else None
    if hc:
        argv = json.loads(hc.group(1))
        if argv and argv[0] == "adaptcache":
            cli_flags = help_flags(cli)
            problems += [f"HEALTHCHECK: {a} is not an adaptcache flag" for a in argv if a.startswith("--") and a.split("=")[0] not in cli_flags]
            sub = subprocess.run([cli, "--help"], capture_output=True, text=True, timeout=30).stdout
            problems += [f"HEALTHCHECK: {a} is not an adaptcache subcommand" for a in argv[1:]
                         if not a.startswith("-") and not a.isdigit() and not re.search(rf"^\s+{re.escape(a)}\s", sub, re.M)]
        rep.check(f"flags: the HEALTHCHECK command {' '.join(argv)} exists", problems)

    problems = []
    tomls = config_tomls(docs, deploy)
    with tempfile.TemporaryDirectory(prefix="ac-deploy-cfg-") as tmp:
        for i, (where, text) in enumerate(tomls):
            path = os.path.join(tmp, f"c{i}.toml")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
            r = subprocess.run([daemon, "--config", path, "--print-config"], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                problems.append(f"{where}: {(r.stderr or r.stdout).strip()[:300]}")
    rep.check(f"configs: {len(tomls)} adaptcached.toml files load with --print-config", problems)


# ---------------------------------------------------------------- dockerfile, prometheus, grafana

def check_dockerfile(deploy: str, rep: Report) -> None:
    df = os.path.join(deploy, "Dockerfile")
    if not os.path.exists(df):
        rep.fail("Dockerfile: deploy/Dockerfile exists")
        return
    text = open(df, encoding="utf-8").read()
    problems = []
    hc = re.search(r"^HEALTHCHECK\s.*?CMD\s+(\[[^\n]*\])", text, re.M | re.S)
    if not hc:
        problems.append("no HEALTHCHECK instruction")
    elif "/healthz" not in hc.group(1):
        problems.append(f"the HEALTHCHECK does not ask /healthz: {hc.group(1)}")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not users:
        problems.append("no USER instruction")
    elif users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"the final USER is {users[-1]}")
    if len(re.findall(r"^FROM\s+debian:bookworm\b", text, re.M)) < 2:
        problems.append("not a multi-stage debian:bookworm build")
    exposed = re.findall(r"^EXPOSE\s+(\d+)", text, re.M)
    m = re.search(r"--metrics-listen\",\s*\"[^\"]*:(\d+)\"", text)
    if m and m.group(1) not in exposed:
        problems.append(f"metrics port {m.group(1)} is not EXPOSEd")
    rep.check(f"Dockerfile: HEALTHCHECK, USER {users[-1] if users else '?'}, EXPOSE {' '.join(exposed)}", problems)


def check_prometheus(docs: dict[str, list], deploy: str, rep: Report) -> None:
    problems = []
    for f, ds in docs.items():
        if f.startswith("prometheus" + os.sep) and f.endswith(("prometheus.yml", "prometheus.yaml")):
            for rf in (ds[0] or {}).get("rule_files", []):
                if not os.path.exists(os.path.join(deploy, os.path.dirname(f), rf)):
                    problems.append(f"{f}: rule file {rf} does not exist")
        if f.startswith("prometheus" + os.sep) and f.endswith(("alerts.yml", "alerts.yaml")):
            for g in (ds[0] or {}).get("groups", []):
                for r in g.get("rules", []):
                    e = r.get("expr", "")
                    if not r.get("alert") or not e:
                        problems.append(f"{f}: a rule without alert or expr in group {g.get('name')}")
                    if e.count("(") != e.count(")") or e.count("{") != e.count("}"):
                        problems.append(f"{f}: {r.get('alert')}: unbalanced brackets")
    rep.check("prometheus: rule files exist, every rule has alert and expr", problems)
    promtool = shutil.which("promtool")
    alerts = deploy_files(os.path.join(deploy, "prometheus"), ("alerts.yml", "alerts.yaml"))
    if promtool and alerts:
        r = subprocess.run([promtool, "check", "rules", *alerts], capture_output=True, text=True, timeout=60)
        rep.check("prometheus: promtool check rules", [] if r.returncode == 0 else (r.stdout + r.stderr).splitlines())
    else:
        print("skip  prometheus: promtool check rules (no promtool)")


def check_grafana(docs: dict[str, list], rep: Report) -> None:
    problems, n = [], 0
    for f, ds in docs.items():
        if not (f.startswith("grafana" + os.sep) and f.endswith(".json")):
            continue
        dash = ds[0]
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)):
            problems.append(f"{f}: duplicate panel ids")
        for p in dash.get("panels", []):
            if p.get("type") == "row":
                continue
            n += 1
            if not p.get("targets") or any(not t.get("expr") for t in p["targets"]):
                problems.append(f"{f}: panel {p.get('title')!r} has a target without expr")
    rep.check(f"grafana: {n} panels, unique ids, every target has an expression", problems)


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", default=os.environ.get("ADAPTCACHE_BIN_DIR") or os.path.join(here, "..", "..", "build", "bin"))
    ap.add_argument("--deploy-dir", default=os.path.join(here, "..", "..", "deploy"))
    ap.add_argument("--work-dir", default=None, help="where the daemon's SSD tier goes (a filesystem with O_DIRECT)")
    a = ap.parse_args()
    deploy, bin_dir = os.path.abspath(a.deploy_dir), os.path.abspath(a.bin_dir)
    print(f"check_deploy: deploy files {deploy}, binaries {bin_dir}")
    for b in ("adaptcached", "adaptcache"):
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            print(f"FAIL  no {b} in {bin_dir} (build it, or pass --bin-dir)")
            return 1
    rep = Report()
    docs = parse_all(deploy, rep)
    check_k8s(docs, rep)
    check_dockerfile(deploy, rep)
    check_prometheus(docs, deploy, rep)
    check_grafana(docs, rep)
    check_flags_and_configs(docs, deploy, bin_dir, rep)
    check_metrics(docs, bin_dir, a.work_dir, rep)
    if rep.failures:
        print(f"check_deploy: {len(rep.failures)} check(s) failed")
        return 1
    print("check_deploy: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
