#!/usr/bin/env python3
"""Our own invariants over rendered Kubernetes manifests (the schemas are checked apart,
by kubernetes-validate). Reads the source tree so that the manifests cannot drift from
what the binary really does:

- every HTTP probe asks for a route the server (or the payment simulator) really serves,
  on a port its container declares;
- every container (init containers and the Job's included) has CPU and memory requests
  and limits;
- no Service selects the worker pods (they serve no HTTP);
- no secret value is committed: no Secret object, no `JWT_SECRET`/`DATABASE_URL` in a
  ConfigMap or as a literal `value`, and both come from a secretKeyRef;
- every variable set in a ConfigMap or an `env` is one the server reads;
- each workload runs the subcommand it is for (`serve --no-worker`, `worker`, `migrate`);
- pods run as non-root (the image's numeric USER) with a read-only root filesystem,
  and DATA_DIR (the image's) is a writable volume;
- the port the API's probes and Service use is the port of BIND_ADDR.

usage: k8s_invariants.py RENDERED.yaml        check one rendering
       k8s_invariants.py --self-test RENDERED.yaml
           break the rendering in each way above and fail unless every break is caught
"""
import copy
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET_VARS = {"JWT_SECRET", "DATABASE_URL"}



def image_facts():
    """The numeric user and DATA_DIR the Dockerfile gives the image."""
    text = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+)", text, re.M)
    data_dir = re.search(r"^ENV .*\bDATA_DIR=(\S+)", text, re.M)
    if not user or not data_dir:
        raise SystemExit("the Dockerfile sets no numeric USER or no DATA_DIR")
    return int(user.group(1)), data_dir.group(1)


IMAGE_USER, DATA_DIR = image_facts()
# Variables read outside clap's `env = "…"` attributes (prefixes, fault injection).
ENV_PREFIXES = ("CACHE_TTL_", "SAGA_FAIL_RATE_")
# The subcommand each workload must run, by its component label.
COMMANDS = {
    "api": ["serve", "--no-worker"],
    "worker": ["worker"],
    "migrate": ["migrate"],
    "payment-provider": ["gateway"],
}


def served_routes():
    """Paths passed to `.route(…)` in the server's HTTP modules and the simulator."""
    routes = set()
    sources = list((ROOT / "src" / "http").glob("*.rs"))
    sources.append(ROOT / "src" / "checkout" / "gateway" / "simulator.rs")
    for source in sources:
        text = source.read_text()
        routes.update(re.findall(r'\.route\(\s*"([^"]+)"', text))
        routes.update(re.findall(r'pub const PATH: &str = "([^"]+)"', text))
    if "/health/ready" not in routes:
        raise SystemExit("could not read the server's routes from src/http")
    return routes


def known_env_vars():
    names = set()
    for source in (ROOT / "src").rglob("*.rs"):
        text = source.read_text()
        names.update(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', text))
        names.update(re.findall(r'env::var\(\s*"([A-Z0-9_]+)"', text))
        # tracing-subscriber reads RUST_LOG itself.
        if "EnvFilter::try_from_default_env" in text:
            names.add("RUST_LOG")
    if "DATABASE_URL" not in names:
        raise SystemExit("could not read the settings' variables from src/config")
    return names


def workloads(docs):
    """(object, pod template spec, pod labels) for each Deployment and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            template = doc["spec"]["template"]
            yield doc, template["spec"], template["metadata"].get("labels", {})


def name(doc):
    return f'{doc["kind"]}/{doc["metadata"]["name"]}'


def check(docs):
    errors = []
    routes = served_routes()
    env_names = known_env_vars()

    def env_ok(var, where):
        if var not in env_names and not var.startswith(ENV_PREFIXES):
            errors.append(f"{where}: {var} is not a variable the server reads")

    for doc in docs:
        if doc["kind"] == "Secret":
            errors.append(f"{name(doc)}: a Secret is committed (create it with kubectl)")
        if doc["kind"] == "ConfigMap":
            for key in doc.get("data", {}):
                if key in SECRET_VARS:
                    errors.append(f"{name(doc)}: {key} is a secret, not configuration")
                env_ok(key, name(doc))

    worker_labels = None
    for doc, spec, labels in workloads(docs):
        component = labels.get("app.kubernetes.io/component")
        if component == "worker":
            worker_labels = labels
        sc = spec.get("securityContext", {})
        if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") != IMAGE_USER:
            errors.append(f"{name(doc)}: pods must run as non-root, as the image's user {IMAGE_USER}")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        containers = spec.get("initContainers", []) + spec["containers"]
        for container in containers:
            where = f'{name(doc)} container {container["name"]}'
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        errors.append(f"{where}: no {resource} in resources.{kind}")
            csc = container.get("securityContext", {})
            if csc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: the root filesystem must be read-only")
            if csc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: privilege escalation must be off")
            expected = COMMANDS.get(component)
            if expected is not None and container.get("args") != expected:
                errors.append(f"{where}: runs {container.get('args')}, expected {expected}")
            if component in ("api", "worker", "migrate"):
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                volume = volumes.get(mounts.get(DATA_DIR, ""), {})
                if "emptyDir" not in volume:
                    errors.append(f"{where}: DATA_DIR ({DATA_DIR}) is not a writable emptyDir")
                refs = {
                    e["name"]: e.get("valueFrom", {}).get("secretKeyRef")
                    for e in container.get("env", [])
                }
                for var in SECRET_VARS:
                    if not refs.get(var):
                        errors.append(f"{where}: {var} must come from a secretKeyRef")
            for env in container.get("env", []):
                env_ok(env["name"], where)
                if env["name"] in SECRET_VARS and "value" in env:
                    errors.append(f'{where}: {env["name"]} has a literal value')
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                http = container.get(probe, {}).get("httpGet")
                if http is None:
                    continue
                if http["path"] not in routes:
                    errors.append(f'{where}: {probe} asks for {http["path"]}, which nothing serves')
                if http["port"] not in ports and http["port"] not in ports.values():
                    errors.append(f"{where}: {probe} port {http['port']} is not declared")
            if component == "api":
                config = next((d for d in docs if d["kind"] == "ConfigMap"), {}).get("data", {})
                bind_port = int(config.get("BIND_ADDR", "0.0.0.0:8000").rsplit(":", 1)[1])
                if ports.get("http") != bind_port:
                    errors.append(f"{where}: port http is {ports.get('http')}, BIND_ADDR listens on {bind_port}")
                for probe, path in (
                    ("livenessProbe", "/health/live"),
                    ("readinessProbe", "/health/ready"),
                ):
                    got = container.get(probe, {}).get("httpGet", {}).get("path")
                    if got != path:
                        errors.append(f"{where}: {probe} must ask for {path}, asks for {got}")
                if "startupProbe" not in container:
                    errors.append(f"{where}: no startupProbe")
        if component in ("api", "worker") and not spec.get("topologySpreadConstraints"):
            errors.append(f"{name(doc)}: no topologySpreadConstraints")

    if worker_labels is None:
        errors.append("no worker Deployment")
    for doc in docs:
        if doc["kind"] != "Service":
            continue
        selector = doc["spec"].get("selector", {})
        if worker_labels and selector and all(worker_labels.get(k) == v for k, v in selector.items()):
            errors.append(f"{name(doc)} selects the worker pods, which serve no HTTP")

    kinds = {doc["kind"] for doc in docs}
    for kind in ("Deployment", "Service", "Ingress", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "ConfigMap", "Job"):
        if kind not in kinds:
            errors.append(f"no {kind} in the rendering")
    return errors


def find(docs, kind, component):
    for doc in docs:
        if doc["kind"] != kind:
            continue
        labels = doc["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/component") == component:
            return doc
    raise SystemExit(f"self-test: no {kind} of component {component}")


def api_container(docs):
    return find(docs, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]


def breakages():
    """Each way of breaking the rendering, with what the check must then say."""

    def probe_to_unknown_route(docs):
        api_container(docs)["readinessProbe"]["httpGet"]["path"] = "/healthz"

    def no_memory_limit(docs):
        del find(docs, "Deployment", "worker")["spec"]["template"]["spec"]["containers"][0][
            "resources"]["limits"]["memory"]

    def service_for_the_workers(docs):
        service = copy.deepcopy(find(docs, "Service", "api"))
        service["metadata"]["name"] = "shopgraph-worker"
        service["spec"]["selector"]["app.kubernetes.io/component"] = "worker"
        docs.append(service)

    def committed_secret(docs):
        docs.append({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "shopgraph-secrets"},
                     "stringData": {"JWT_SECRET": "committed by mistake"}})

    def secret_in_config(docs):
        config = next(d for d in docs if d["kind"] == "ConfigMap")
        config["data"]["JWT_SECRET"] = "committed by mistake"

    def literal_secret(docs):
        for env in api_container(docs)["env"]:
            if env["name"] == "DATABASE_URL":
                env.pop("valueFrom")
                env["value"] = "postgres://shop:password@db/shop"

    def unknown_variable(docs):
        config = next(d for d in docs if d["kind"] == "ConfigMap")
        config["data"]["REDIS_HOST"] = "redis"

    def api_runs_workers(docs):
        api_container(docs)["args"] = ["serve"]

    def writable_root(docs):
        api_container(docs)["securityContext"]["readOnlyRootFilesystem"] = False

    def no_data_dir(docs):
        container = api_container(docs)
        container["volumeMounts"] = [m for m in container["volumeMounts"]
                                     if m["mountPath"] != DATA_DIR]

    def no_startup_probe(docs):
        del api_container(docs)["startupProbe"]

    def other_port(docs):
        config = next(d for d in docs if d["kind"] == "ConfigMap")
        config["data"]["BIND_ADDR"] = "0.0.0.0:9000"

    def root_user(docs):
        find(docs, "Job", "migrate")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0

    return [
        (probe_to_unknown_route, "which nothing serves"),
        (no_memory_limit, "no memory in resources.limits"),
        (service_for_the_workers, "selects the worker pods"),
        (committed_secret, "a Secret is committed"),
        (secret_in_config, "is a secret, not configuration"),
        (literal_secret, "has a literal value"),
        (unknown_variable, "REDIS_HOST is not a variable"),
        (api_runs_workers, "expected ['serve', '--no-worker']"),
        (writable_root, "must be read-only"),
        (no_data_dir, "is not a writable emptyDir"),
        (no_startup_probe, "no startupProbe"),
        (other_port, "BIND_ADDR listens on 9000"),
        (root_user, "as the image's user"),
    ]


def load(path):
    with open(path) as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


def main(argv):
    self_test = argv[1:2] == ["--self-test"]
    path = argv[-1]
    docs = load(path)
    errors = check(docs)
    if errors:
        print("\n".join(f"  {e}" for e in errors))
        print(f"{path}: {len(errors)} invariant(s) broken")
        return 1
    if not self_test:
        print(f"{path}: {len(docs)} objects, every invariant holds")
        return 0
    missed = []
    for breakage, expected in breakages():
        broken = copy.deepcopy(docs)
        breakage(broken)
        found = check(broken)
        if not any(expected in e for e in found):
            missed.append(f"{breakage.__name__}: expected '{expected}', got {found}")
    if missed:
        print("\n".join(f"  the check missed {m}" for m in missed))
        return 1
    print(f"self-test: each of {len(breakages())} breakages is caught")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
