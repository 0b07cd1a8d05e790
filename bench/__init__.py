"""workmanager's own benchmark: `make bench` (python -m bench.wmbench)."""
