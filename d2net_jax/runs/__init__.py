"""A run's folder as a record (above config and methods, below inference and training).

  run_dir.py  config.json and its comparison on resume, history.jsonl, model.json, the lock and
              stop flag, results files' provenance (date, commit, version)
  run_log.py  metrics.jsonl and, with tensorboardX installed, TensorBoard events
"""
