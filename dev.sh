#!/usr/bin/env bash
# The two set-up commands of the README:
#   bash dev.sh demo   train + evaluate on the built-in synthetic benchmark
#   bash dev.sh test   the whole test suite (what CI runs), on 2 xdist workers; extra arguments go
#                      to pytest: `bash dev.sh test -m 'not slow'` skips the end-to-end runs
#                      (train commands, experiment scripts) for a quicker local check
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
    # worksteal: each worker starts on one contiguous half of the tests (a module's fixtures are
    # built once) and takes over the other's remaining tests when it runs out.
    exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist worksteal "$@" ;;
  *)
    echo "usage: bash dev.sh demo|test [extra args]" >&2; exit 2 ;;
esac
