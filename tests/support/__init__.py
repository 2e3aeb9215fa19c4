"""Helpers shared by the integration tests, the e2e tests and the benchmarks."""
