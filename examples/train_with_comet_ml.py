"""A training script that uses comet_ml itself, run under the agent.

    comet-agent run -- python examples/train_with_comet_ml.py --steps 100

The agent hands the experiment to the script (``COMET_EXPERIMENT_KEY``, and on the embedded
default the local server's URL and key), so ``comet_ml.start()`` records the loss curve into the
very experiment where the agent records the system metrics, and comet_ml's own system loggers
stay off (the agent records all of that once).
"""

from __future__ import annotations

import argparse
import math
import time

import comet_ml


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    experiment = comet_ml.start()
    for step in range(args.steps):
        loss = math.exp(-step / 30) + 0.01 * math.sin(step)
        experiment.log_metric("loss", loss, step=step)
        time.sleep(0.01)
    experiment.log_parameter("steps", args.steps)
    experiment.end()
    print(f"trained {args.steps} steps in experiment {experiment.get_key()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
