#!/usr/bin/env python3
"""Checks docker-compose.yml (and the Sentinel file over it) without a Docker engine:
what `docker compose config` would refuse, and our own rules.

- the YAML parses, every `depends_on`, named volume and bind-mounted file exists;
- JWT_SECRET has no default: it is `${JWT_SECRET:?…}`, so `up` refuses to start without
  it, and every service with APP_ENV=production gets it;
- every redis-server has `maxmemory` and a `volatile-*` eviction policy (the tenants'
  invalidation sequences carry no TTL and must never be evicted);
- nginx serves deploy/nginx/shopgraph.conf, in front of every API instance and on the
  port they listen on, and the instances trust exactly nginx's fixed address.

usage: compose_check.py [--self-test]
"""
import copy
import ipaddress
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Loader(yaml.SafeLoader):
    """Accepts Compose's `!reset` tag (docker-compose.sentinel.yml)."""


Loader.add_constructor("!reset", lambda loader, node: None)


def load(name):
    with open(ROOT / name) as file:
        return yaml.load(file, Loader=Loader)


def api_services(compose):
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("command", [None])[:1] == ["serve"]
    }


def check(compose, raw):
    errors = []
    services = compose["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}) or {}:
            if dep not in services:
                errors.append(f"{name}: depends on {dep}, which is not a service")
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                if not (ROOT / source).exists():
                    errors.append(f"{name}: mounts {source}, which does not exist")
            elif source not in (compose.get("volumes") or {}):
                errors.append(f"{name}: volume {source} is not declared")
        env = svc.get("environment", {}) or {}
        if env.get("APP_ENV") == "production" and "JWT_SECRET" not in env:
            errors.append(f"{name}: APP_ENV=production without JWT_SECRET")
        command = svc.get("command") or []
        if command[:1] == ["redis-server"]:
            args = dict(zip(command[1::2], command[2::2]))
            if "--maxmemory" not in args:
                errors.append(f"{name}: redis-server without --maxmemory")
            if not args.get("--maxmemory-policy", "").startswith("volatile-"):
                errors.append(f"{name}: the eviction policy must be volatile-* (keeps the keys without TTL)")

    secrets = re.findall(r"\$\{JWT_SECRET([^}]*)\}", raw)
    if not secrets:
        errors.append("JWT_SECRET is not taken from the environment")
    for tail in secrets:
        if not tail.startswith(":?"):
            errors.append(f"${{JWT_SECRET{tail}}}: must be ${{JWT_SECRET:?…}} (no default)")

    apis = api_services(compose)
    if len(apis) < 2:
        errors.append("fewer than two API services")
    nginx = services.get("nginx")
    if nginx is None:
        return errors + ["no nginx service"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in nginx.get("volumes", [])}
    if mounts.get("/etc/nginx/conf.d/default.conf") != "./deploy/nginx/shopgraph.conf":
        errors.append("nginx does not serve deploy/nginx/shopgraph.conf")
    upstreams = (ROOT / mounts.get("/etc/nginx/shopgraph/upstreams.conf", "missing")).read_text() \
        if "/etc/nginx/shopgraph/upstreams.conf" in mounts else ""
    listed = dict(re.findall(r"^\s*server\s+([\w.-]+):(\d+)", upstreams, re.M))
    for name, svc in apis.items():
        env = svc.get("environment", {})
        port = (env.get("BIND_ADDR") or "0.0.0.0:8000").rsplit(":", 1)[1]
        if listed.get(name) != port:
            errors.append(f"nginx's upstreams do not list {name}:{port}")
        if svc.get("ports"):
            errors.append(f"{name} publishes a port: clients must go through nginx")
    address = nginx.get("networks", {}).get("default", {}).get("ipv4_address")
    subnets = [
        ipaddress.ip_network(c["subnet"])
        for c in compose.get("networks", {}).get("default", {}).get("ipam", {}).get("config", [])
    ]
    if address is None or not any(ipaddress.ip_address(address) in s for s in subnets):
        errors.append("nginx has no fixed address inside the network's subnet")
    for name, svc in apis.items():
        trusted = (svc.get("environment", {}).get("TRUSTED_PROXIES") or "").split(",")
        if trusted != [address]:
            errors.append(f"{name}: TRUSTED_PROXIES must be nginx's address alone, is {trusted}")
    return errors


def breakages():
    def default_secret(compose, raw):
        return compose, raw.replace("${JWT_SECRET:?", "${JWT_SECRET:-")

    def allkeys_eviction(compose, raw):
        cmd = compose["services"]["redis-primary"]["command"]
        cmd[cmd.index("--maxmemory-policy") + 1] = "allkeys-lru"
        return compose, raw

    def api_published(compose, raw):
        compose["services"]["api-1"]["ports"] = ["8001:8000"]
        return compose, raw

    def trust_everyone(compose, raw):
        compose["services"]["api-2"]["environment"]["TRUSTED_PROXIES"] = "0.0.0.0/0"
        return compose, raw

    def unknown_dependency(compose, raw):
        compose["services"]["nginx"]["depends_on"]["api-3"] = {"condition": "service_healthy"}
        return compose, raw

    return [
        (default_secret, "no default"),
        (allkeys_eviction, "must be volatile-*"),
        (api_published, "publishes a port"),
        (trust_everyone, "TRUSTED_PROXIES must be nginx's address"),
        (unknown_dependency, "api-3, which is not a service"),
    ]


def main(argv):
    raw = (ROOT / "docker-compose.yml").read_text()
    compose = load("docker-compose.yml")
    load("docker-compose.sentinel.yml")  # must parse, with its !reset tags
    errors = check(compose, raw)
    if errors:
        print("\n".join(f"  {e}" for e in errors))
        print(f"docker-compose.yml: {len(errors)} problem(s)")
        return 1
    print("docker-compose.yml: every check holds")
    if argv[1:2] != ["--self-test"]:
        return 0
    missed = []
    for breakage, expected in breakages():
        broken, broken_raw = breakage(copy.deepcopy(compose), raw)
        found = check(broken, broken_raw)
        if not any(expected in e for e in found):
            missed.append(f"{breakage.__name__}: expected '{expected}', got {found}")
    if missed:
        print("\n".join(f"  the check missed {m}" for m in missed))
        return 1
    print(f"self-test: each of {len(breakages())} breakages is caught")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
