#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need and is
# missing (scripts/setup.sh), then `cargo nextest run --workspace` with any
# further arguments (a filter, `--no-fail-fast`, …).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo nextest run --workspace "$@"
