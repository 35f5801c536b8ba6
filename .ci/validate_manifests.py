#!/usr/bin/env python3
"""Validates examples/kubernetes offline; run by .ci/validate-manifests (which installs the tools).

1. Renders every kustomization under the examples with `kubectl kustomize`.
2. Checks every rendered object, and every *.example.yaml (Secrets applied by hand), against the
   JSON schemas of Kubernetes 1.29 (the first with native sidecars on by default) and of the
   newest release kubernetes-validate ships, in strict mode (unknown fields are errors). The
   schemas are inside the kubernetes-validate wheel: nothing is downloaded.
3. Checks what a schema cannot: the rules examples/kubernetes/README.md states (Warden a native
   sidecar, probes on the right endpoints and port, hardened security contexts, resources,
   the Service reaching Warden only, the config's files under the right mounts, the store on a
   PVC with one replica or shared with several).
4. Runs `warden check-config` on the warden.toml each rendered ConfigMap holds, with the
   environment the Deployment gives the container.
"""

import argparse
import ipaddress
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import yaml
from kubernetes_validate import utils as kv

FIRST_VERSION = "1.29.0"
# What a Secret holds in the cluster, for `check-config`: values of the right shape.
SECRET_ENV_PLACEHOLDERS = {
    "WARDEN_STORE__URL": "postgres://warden:placeholder@postgres.invalid:5432/warden?sslmode=require",
}
# The reply of a Warden built without the PostgreSQL backend (being added on another branch).
NO_POSTGRES_BACKEND = "only sqlite:// stores are supported by this build"

errors: list[str] = []


def fail(where, message):
    errors.append(f"{where}: {message}")
    print(f"  FAIL {where}: {message}")


def name_of(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def render(kubectl, directory):
    run = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    if run.returncode != 0:
        fail(directory, f"kubectl kustomize failed: {run.stderr.strip()}")
        return []
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc]


def check_schema(where, obj, versions):
    for version in versions:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            fail(where, f"{name_of(obj)} is not valid Kubernetes {e.version}: {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            fail(where, f"{name_of(obj)}: {e.message}")


def under(path, mount):
    return PurePosixPath(path).is_relative_to(PurePosixPath(mount))


def mount_of(container, path):
    """The volumeMount holding `path` (the deepest one)."""
    best = None
    for m in container.get("volumeMounts", []):
        if under(path, m["mountPath"]) and (
            best is None or len(m["mountPath"]) > len(best["mountPath"])
        ):
            best = m
    return best


def secret_files(volume):
    """File name -> (Secret, key) for a secret or projected-secret volume."""
    files = {}
    sources = []
    if "secret" in volume:
        sources.append(volume["secret"])
    for source in volume.get("projected", {}).get("sources", []):
        if "secret" in source:
            sources.append(source["secret"])
    for s in sources:
        name = s.get("secretName") or s.get("name")
        for item in s.get("items", []):
            files[item["path"]] = (name, item["key"])
    return files


def check_variant(where, objs, warden_bin, workdir):
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        fail(where, f"expected one Deployment, found {len(deployments)}")
        return
    dep = deployments[0]
    pod = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    # Warden is a native sidecar, and only that.
    sidecars = [c for c in pod.get("initContainers", []) if c["name"] == "warden"]
    if len(sidecars) != 1 or sidecars[0].get("restartPolicy") != "Always":
        fail(where, "Warden must be the init container 'warden' with restartPolicy: Always")
        return
    warden = sidecars[0]
    if any(c["name"] == "warden" for c in pod.get("containers", [])):
        fail(where, "'warden' must not also be a regular container")

    # The pod: service links off (a Service named "warden" would put WARDEN_SERVICE_HOST,
    # WARDEN_PORT… into the environment, which Warden reads as unknown config keys and exits).
    if pod.get("enableServiceLinks") is not False:
        fail(where, "enableServiceLinks must be false (WARDEN_* service variables stop Warden)")
    if pod.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken must be false (Warden needs no API access)")
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or psc.get("runAsUser", 0) == 0:
        fail(where, "the pod must run as a non-root user (runAsNonRoot, runAsUser)")
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        cname = f"container {c['name']}"
        sc = c.get("securityContext", {})
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp != "RuntimeDefault":
            fail(where, f"{cname}: seccompProfile must be RuntimeDefault")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(where, f"{cname}: allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(where, f"{cname}: readOnlyRootFilesystem must be true")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            fail(where, f"{cname}: capabilities must drop ALL and add none")
        if sc.get("runAsUser") == 0 or sc.get("privileged"):
            fail(where, f"{cname}: must not run as root or privileged")
        res = c.get("resources", {})
        for want in ("requests.cpu", "requests.memory", "limits.memory"):
            part, key = want.split(".")
            if key not in res.get(part, {}):
                fail(where, f"{cname}: resources.{want} is missing")
        if c is not warden and c.get("ports"):
            fail(where, f"{cname}: only Warden may declare ports (the API listens on localhost)")

    # The config Warden reads: WARDEN_CONFIG, from the ConfigMap mounted there.
    env = {e["name"]: e for e in warden.get("env", [])}
    config_path = env.get("WARDEN_CONFIG", {}).get("value")
    if not config_path:
        fail(where, "the warden container must set WARDEN_CONFIG")
        return
    m = mount_of(warden, config_path)
    cm_name = volumes.get(m["name"], {}).get("configMap", {}).get("name") if m else None
    cms = [o for o in by_kind.get("ConfigMap", []) if o["metadata"]["name"] == cm_name]
    key = str(PurePosixPath(config_path).relative_to(m["mountPath"])) if m else None
    if not cms or key not in cms[0].get("data", {}):
        fail(where, f"{config_path} is not a key of a ConfigMap mounted in the warden container")
        return
    text = cms[0]["data"][key]
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(where, f"{name_of(cms[0])} {key}: not TOML: {e}")
        return
    server = config.get("server", {})
    tls = server.get("tls")
    endpoints = config.get("endpoints", {})

    # One Tokio worker per core of the CPU limit at most.
    workers = server.get("worker_threads", 0)
    cpu = str(warden.get("resources", {}).get("limits", {}).get("cpu", ""))
    if workers and cpu:
        cores = int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        if workers > max(1, -(-cores // 1)):
            fail(where, f"server.worker_threads = {workers} is more than the CPU limit {cpu}")

    # Probes: startup and liveness on /healthz, readiness on /readyz, on Warden's port.
    listen_port = int(server.get("listen", "127.0.0.1:8080").rsplit(":", 1)[1])
    ports = {p.get("name"): p["containerPort"] for p in warden.get("ports", [])}
    if listen_port not in ports.values():
        fail(where, f"server.listen's port {listen_port} is not a port of the warden container")
    want = {
        "startupProbe": endpoints.get("healthz", "/healthz"),
        "livenessProbe": endpoints.get("healthz", "/healthz"),
        "readinessProbe": endpoints.get("readyz", "/readyz"),
    }
    for probe, path in want.items():
        get = warden.get(probe, {}).get("httpGet")
        if not get:
            fail(where, f"warden {probe}: an httpGet probe is required")
            continue
        if get.get("path") != path:
            fail(where, f"warden {probe} must get {path}, not {get.get('path')}")
        port = ports.get(get.get("port"), get.get("port"))
        if port != listen_port:
            fail(where, f"warden {probe} targets port {get.get('port')}, not server.listen")
        if get.get("scheme", "HTTP") != ("HTTPS" if tls else "HTTP"):
            fail(where, f"warden {probe}: scheme must be {'HTTPS' if tls else 'HTTP'}")

    # The admin listener, when on: a container port named admin, the scrape annotations on it,
    # and never in a Service (checked below: every Service port targets server.listen).
    admin = config.get("admin", {})
    if admin.get("listen"):
        admin_port = int(admin["listen"].rsplit(":", 1)[1])
        if ports.get("admin") != admin_port:
            fail(where, f"admin.listen's port {admin_port} must be the container port 'admin'")
        notes = dep["spec"]["template"]["metadata"].get("annotations", {})
        if notes.get("prometheus.io/scrape") == "true":
            if notes.get("prometheus.io/port") != str(admin_port):
                fail(where, f"prometheus.io/port must be the admin port {admin_port}")
            if notes.get("prometheus.io/path") != admin.get("metrics", "/metrics"):
                fail(where, "prometheus.io/path must be admin.metrics")
        if endpoints.get("metrics"):
            fail(where, "with the admin listener on, endpoints.metrics must stay off")

    # The Service reaches the pods, through Warden's port only.
    services = by_kind.get("Service", [])
    if not services:
        fail(where, "no Service")
    for svc in services:
        sel = svc["spec"].get("selector", {})
        if not sel or any(labels.get(k) != v for k, v in sel.items()):
            fail(where, f"{name_of(svc)}: its selector does not select the pod")
        for p in svc["spec"].get("ports", []):
            target = p.get("targetPort", p["port"])
            if ports.get(target, target) != listen_port:
                fail(where, f"{name_of(svc)} port {p['port']} does not target Warden's port")

    # The upstream is the API container of the pod, on loopback.
    host = urlsplit(config.get("upstream", {}).get("url", "http://127.0.0.1:3000")).hostname
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        fail(where, f"upstream.url must be the pod's loopback, not {host}")

    # Files the config names are in the Secrets mounted there.
    files = {}
    if tls:
        files["WARDEN_SERVER__TLS__CERT"] = tls.get("cert", "")
        files["WARDEN_SERVER__TLS__KEY"] = tls.get("key", "")
    seal = config.get("store", {}).get("seal_key_file", "")
    if not seal:
        fail(where, "store.seal_key_file must name a file from a Secret")
    else:
        files["WARDEN_STORE__SEAL_KEY_FILE"] = seal
    for var, path in files.items():
        m = mount_of(warden, path)
        held = secret_files(volumes.get(m["name"], {})) if m else {}
        rel = str(PurePosixPath(path).relative_to(m["mountPath"])) if m else None
        if rel not in held:
            fail(where, f"{path} is not a file of a Secret mounted in the warden container")
        # A subPath mount is a copy the kubelet never updates: a renewed certificate would
        # not reach Warden's reload (server.tls.reload_interval).
        if m and "subPath" in m and var.startswith("WARDEN_SERVER__TLS__"):
            fail(where, f"{path}: a subPath mount never sees a renewed certificate")

    # The store: SQLite on a PersistentVolumeClaim and one replica, or a shared store from a
    # Secret with several.
    replicas = dep["spec"].get("replicas", 1)
    store_env = env.get("WARDEN_STORE__URL")
    if store_env:
        if "secretKeyRef" not in store_env.get("valueFrom", {}):
            fail(where, "WARDEN_STORE__URL holds a password: it must come from a Secret")
        if replicas < 2:
            fail(where, "a shared store is there for several replicas")
        pdbs = [
            p
            for p in by_kind.get("PodDisruptionBudget", [])
            if all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())
        ]
        if not pdbs:
            fail(where, "several replicas need a PodDisruptionBudget selecting them")
        if any("persistentVolumeClaim" in v for v in volumes.values()):
            fail(where, "replicas of a Deployment cannot share a ReadWriteOnce volume")
    else:
        url = config.get("store", {}).get("url", "sqlite://data/warden.db")
        db = url.split("://", 1)[1].split("?", 1)[0] if "://" in url else url
        if not PurePosixPath(db).is_absolute():
            fail(where, f"store.url {url}: give an absolute path on the store's volume")
        m = mount_of(warden, db)
        volume = volumes.get(m["name"], {}) if m else {}
        if not m or m.get("readOnly") or "persistentVolumeClaim" not in volume:
            fail(where, f"{db} must be on a writable PersistentVolumeClaim (an emptyDir dies "
                        "with the pod, and the tokens and idempotency records with it)")
        if replicas != 1 or dep["spec"].get("strategy", {}).get("type") != "Recreate":
            fail(where, "the embedded store allows one replica, rolled with Recreate")

    # Nothing left over that no pod uses (a volume claim an overlay forgot to remove).
    claims = {v["persistentVolumeClaim"]["claimName"] for v in volumes.values()
              if "persistentVolumeClaim" in v}
    for pvc in by_kind.get("PersistentVolumeClaim", []):
        if pvc["metadata"]["name"] not in claims:
            fail(where, f"{name_of(pvc)} is not used by the Deployment")

    # warden check-config on that file, with the container's environment.
    run_check_config(where, text, env, files, warden_bin, workdir)


def run_check_config(where, text, env, files, warden_bin, workdir):
    d = Path(tempfile.mkdtemp(dir=workdir))
    config = d / "warden.toml"
    config.write_text(text)
    child = {"PATH": os.environ.get("PATH", ""), "HOME": str(d)}
    for name, e in env.items():
        if "value" in e:
            child[name] = e["value"]
        elif name in SECRET_ENV_PLACEHOLDERS:
            child[name] = SECRET_ENV_PLACEHOLDERS[name]
        else:
            fail(where, f"no placeholder for {name} (from a Secret) to run check-config with")
    child["WARDEN_CONFIG"] = str(config)
    # The Secret files are not here (their mounts were checked above): stand-ins of the same
    # names. check-config only checks that the TLS files exist; the seal key is read at start.
    for var, path in files.items():
        stand_in = d / PurePosixPath(path).name
        stand_in.write_text("stand-in\n")
        child[var] = str(stand_in)
    run = subprocess.run(
        [warden_bin, "check-config"], env=child, capture_output=True, text=True, cwd=d
    )
    out = (run.stdout + run.stderr).strip()
    if run.returncode == 0:
        print(f"  ok   {where}: warden check-config: {out}")
    elif NO_POSTGRES_BACKEND in out and "WARDEN_STORE__URL" in child:
        print(f"  SKIP {where}: warden check-config: this Warden has no PostgreSQL backend yet "
              f"({out}); the rest of the config was checked with the SQLite store")
        del child["WARDEN_STORE__URL"]
        # The same file without the override: everything but the store URL is still checked.
        run = subprocess.run(
            [warden_bin, "check-config"], env=child, capture_output=True, text=True, cwd=d
        )
        if run.returncode != 0:
            fail(where, f"warden check-config: {(run.stdout + run.stderr).strip()}")
    else:
        fail(where, f"warden check-config: {out}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--warden", required=True, help="the warden binary for check-config")
    ap.add_argument("root", type=Path)
    args = ap.parse_args()
    args.warden = str(Path(args.warden).resolve())
    versions = [FIRST_VERSION, kv.latest_version()]
    print(f"schemas: Kubernetes {', '.join(versions)} (strict), from kubernetes-validate")

    with tempfile.TemporaryDirectory() as workdir:
        for k in sorted(args.root.rglob("kustomization.yaml")):
            where = k.parent
            objs = render(args.kubectl, where)
            print(f"{where}: {', '.join(name_of(o) for o in objs)}")
            for o in objs:
                check_schema(where, o, versions)
            if objs:
                check_variant(where, objs, args.warden, workdir)
        for f in sorted(args.root.rglob("*.example.yaml")):
            print(f"{f}")
            for o in (d for d in yaml.safe_load_all(f.read_text()) if d):
                check_schema(f, o, versions)

    if errors:
        print(f"\n{len(errors)} problem(s) in {args.root}")
        return 1
    print(f"\nmanifests OK: {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
