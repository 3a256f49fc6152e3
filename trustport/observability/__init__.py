"""Metrics: the RADIUS hook's counters (hook_counters) and the Prometheus exposition (metrics)."""
