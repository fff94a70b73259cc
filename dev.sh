#!/usr/bin/env bash
# The two set-up commands of the README:
#   bash dev.sh demo   train + evaluate on the built-in synthetic benchmark
#   bash dev.sh test   the whole test suite
# Each creates ./.venv (Python 3.11) on first use and installs the package into it.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import d2net_jax, pytest, xdist, chex, importlinter' 2>/dev/null; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
fi
cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    exec .venv/bin/d2net-jax train --config configs/synthetic.py --workdir "${WORKDIR:-runs/demo}" "$@" ;;
  test)
    exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@" ;;
  *)
    echo "usage: bash dev.sh demo|test [extra args]" >&2; exit 2 ;;
esac
