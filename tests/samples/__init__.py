"""Manifests for tests: the bad-input catalogue under ``invalid/`` and its loader."""
