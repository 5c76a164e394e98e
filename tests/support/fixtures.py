"""Fixtures shared across test folders (registered from tests/conftest.py via pytest_plugins)."""
