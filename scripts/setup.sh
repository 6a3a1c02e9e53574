#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust and is missing, and nothing
# else: cargo-nextest (the test runner); from Debian's archive `prometheus`
# (prometheus and promtool, for the tests of deploy/), `chromium` with
# `chromium-driver` (the live page's browser test) and `shellcheck`; and from
# PyPI, into a virtual environment under the target directory, the linters of
# scripts/requirements-tools.txt (hadolint for the Dockerfile, check-jsonschema
# for the CI workflow, kubernetes-validate for deploy/kubernetes). Safe to run
# again: it installs only what is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${CARGO_TARGET_DIR:-target}/tools-venv
installed() {
  for tool in hadolint check-jsonschema kubernetes-validate; do
    [ -x "$tools/bin/$tool" ] || return 1
  done
}
if ! installed; then
  echo "setup: installing scripts/requirements-tools.txt into $tools" >&2
  python3 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-tools.txt
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi

packages=()
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  packages+=(prometheus)
fi
command -v chromium >/dev/null || packages+=(chromium)
command -v chromedriver >/dev/null || packages+=(chromium-driver)
command -v shellcheck >/dev/null || packages+=(shellcheck)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx)
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "setup: installing ${packages[*]} needs root or sudo (apt-get)" >&2
  exit 1
fi
echo "setup: installing ${packages[*]} (apt-get)" >&2
install() {
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
}
# A fresh machine may have no package lists yet.
install || { "${as_root[@]}" apt-get update -q >/dev/null && install; }
