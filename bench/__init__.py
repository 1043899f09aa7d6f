"""The throughput benchmark behind `records bench` (bench/pipeline_bench.py)."""
