"""Makes ``import pynvml`` give the fake built from a recorded GPU model, in a subprocess.

A test that runs the real ``comet-agent`` as a subprocess puts this folder first on its
``PYTHONPATH`` (and the repository after it) and names the model in ``COMET_AGENT_TEST_NVML``
(``a100-sxm4-80gb``...): Python imports this ``sitecustomize`` at start, and the agent's own
``sources/nvml.py`` then imports the fake in place of the real bindings. The substitution is at
the edge (the system library's bindings); nothing of comet_agent is touched. Without the
variable it does nothing.
"""

import os
import sys

_model = os.environ.get("COMET_AGENT_TEST_NVML")
if _model:
    from tests.support.fake_nvml import build_fake_nvml

    sys.modules["pynvml"] = build_fake_nvml(_model)
