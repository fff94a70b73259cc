"""Runs experiment scripts one after another in this process (not a test module).

`python tests/experiment_runner.py` reads jobs from stdin, one JSON line each: {"argv": [script,
arg, ...], "token": str}. Each script runs as `python <script> <args>` would: as `__main__`
(runpy), with that sys.argv and sys.path[0], its stdout captured; `SystemExit` gives its exit
status as the interpreter would (a message: printed to stderr, status 1). Then the runner prints
one line to its stdout, `<token> <JSON {"code": int, "stdout": str}>`, and waits for the next job.
Scripts in one runner share one Python + JAX start-up and JAX's in-memory caches (the eager
operations of model initialisation compile once): tests/test_experiments.py starts one per module.
"""

import contextlib
import io
import json
import os
import runpy
import sys
import traceback


def run(argv):
  """(exit status, captured stdout) of `python argv[0] argv[1:]`, run in this process."""
  out = io.StringIO()
  saved_argv, saved_path0 = sys.argv, sys.path[0]
  sys.argv = list(argv)
  sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
  code = 0
  try:
    with contextlib.redirect_stdout(out):
      runpy.run_path(argv[0], run_name='__main__')
  except SystemExit as e:
    if e.code is None or isinstance(e.code, int):
      code = e.code or 0
    else:
      print(e.code, file=sys.stderr)
      code = 1
  except BaseException:  # pylint: disable=broad-except
    traceback.print_exc()
    code = 1
  finally:
    sys.argv, sys.path[0] = saved_argv, saved_path0
    sys.stderr.flush()
  return code, out.getvalue()


def main():
  for line in sys.stdin:
    job = json.loads(line)
    code, stdout = run(job['argv'])
    print(job['token'], json.dumps({'code': code, 'stdout': stdout}), flush=True)


if __name__ == '__main__':
  main()
