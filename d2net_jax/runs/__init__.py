"""A training run's folder: its record (run_dir.py) and its metrics log (run_log.py)."""
