"""Records: frozen dataclasses that carry what collectors found, with units in field names.

Records know nothing of Comet's camelCase payload keys; the mapping to payloads lives in one
place, ``comet_agent/delivery/payloads.py``. Epoch milliseconds end in ``_ms``, byte counts in
``_bytes``, percentages in ``_percent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# ---------------------------------------------------------------------------------------------
# Static snapshots (collected once per run)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Periodic samples (collected each tick)
# ---------------------------------------------------------------------------------------------
