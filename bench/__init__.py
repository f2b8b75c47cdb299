"""Benchmarks: InfiniTrain against raw Celery doing the same work in the same run."""
