"""A run's record on disk: its workdir (run_dir) and its metrics log (run_log)."""
