"""Benchmarks against the peers and raw floors, and the micro-measurements of threads and tasks."""
