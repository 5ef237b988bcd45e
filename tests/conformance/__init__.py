"""Conformance runs: httpx's own test suite on httpool's transport (`python -m tests.conformance`)."""
