#!/usr/bin/env bash
# Checks the deployment files offline (no cluster, no Docker engine):
# - deploy/k8s: each kustomization (base, overlays/production) renders with
#   `kubectl kustomize`, every object validates against the Kubernetes schemas
#   (kubernetes-validate from PyPI, strict), and our invariants hold
#   (deploy/k8s_invariants.py, which first proves it catches each breakage);
# - deploy/nginx: `nginx -t` on the configuration as installed, and no retry of a POST
#   once sent (no `non_idempotent`);
# - docker-compose.yml: deploy/compose_check.py.
# Needs kubectl, nginx and python3; installs kubernetes-validate into a venv kept in
# the user's cache (DEPLOY_VENV to change).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/shopgraph/deploy-venv}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.32.0}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q kubernetes-validate
fi
PY="$VENV/bin/python"

echo "== deploy/k8s: render, validate against Kubernetes $KUBERNETES_VERSION, invariants"
for dir in deploy/k8s/base deploy/k8s/overlays/production; do
  rendered="$out/$(basename "$dir").yaml"
  kubectl kustomize "$dir" >"$rendered"
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$rendered"
  echo "$dir: $(grep -c '^kind:' "$rendered") objects valid"
  "$PY" deploy/k8s_invariants.py --self-test "$rendered"
done

echo "== deploy/nginx: nginx -t, no retried POST"
conf="$out/nginx"
mkdir -p "$conf/shopgraph" "$conf/temp"
cp deploy/nginx/shopgraph.conf "$conf/"
cp deploy/nginx/shopgraph/upstreams.conf "$conf/shopgraph/"
echo "listen 127.0.0.1:18079;" >"$conf/shopgraph/listen.conf"
cat >"$conf/nginx.conf" <<CONF
worker_processes 1;
pid $conf/nginx.pid;
error_log stderr;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $conf/temp/body;
  proxy_temp_path $conf/temp/proxy;
  fastcgi_temp_path $conf/temp/fastcgi;
  uwsgi_temp_path $conf/temp/uwsgi;
  scgi_temp_path $conf/temp/scgi;
  include $conf/shopgraph.conf;
}
CONF
nginx -q -t -p "$conf" -c "$conf/nginx.conf"
if grep -v '^\s*#' deploy/nginx/shopgraph.conf | grep -q non_idempotent; then
  echo "deploy/nginx/shopgraph.conf retries non-idempotent requests (POST mutations)" >&2
  exit 1
fi
for location in '= /graphql' '= /graphql/ws'; do
  grep -q "location $location {" deploy/nginx/shopgraph.conf ||
    { echo "deploy/nginx/shopgraph.conf: no location $location" >&2; exit 1; }
done
echo "deploy/nginx/shopgraph.conf: valid"

echo "== docker-compose.yml"
"$PY" deploy/compose_check.py --self-test
