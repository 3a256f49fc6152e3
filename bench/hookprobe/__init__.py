"""Bench-only timers for the rlm_python3 hook (bench/bench_auth_path.py); never loaded by production."""
