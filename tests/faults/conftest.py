"""The fault-injection suite: the real agent, as a subprocess, against loopback servers.

Every test here carries the ``faults`` marker (registered in pyproject.toml): ``-m faults`` runs the suite alone.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/faults/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.faults)
