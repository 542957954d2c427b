"""Benchmarks for the Minqing ledger: `python -m bench.run` (or `make bench`), `python -m bench.profile_append`."""
