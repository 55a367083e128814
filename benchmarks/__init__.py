"""Benchmarks of sharingan_store against what people use today; entry point: ``benchmarks/run.py``."""
