"""Helpers that run a real llama.cpp ``llama-server`` with a tiny generated model in tests."""
