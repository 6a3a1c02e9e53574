#!/usr/bin/env bash
# Installs what the test suite needs beyond Rust and is missing, and nothing
# else: cargo-nextest (the test runner), and from Debian's archive
# `prometheus` (prometheus and promtool, for the tests of deploy/) and
# `chromium` with `chromium-driver` (the live page's browser test). Safe to
# run again: it installs only what is absent.
set -euo pipefail

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
