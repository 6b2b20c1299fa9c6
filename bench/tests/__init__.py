"""Tests of the benchmark harness itself (no timing assertions): `.venv/bin/pytest -p no:django bench/tests`."""
