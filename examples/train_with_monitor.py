"""The same kind of CPU-only training loop, monitored from inside with the context manager.

    python examples/train_with_monitor.py            # creates an experiment on the configured server
    python examples/train_with_monitor.py --experiment KEY

With no Comet configured, the agent uses the local server (started for the run if none is
running). The agent samples on daemon threads and flushes when the block ends.
"""

from __future__ import annotations

import argparse
import random

import comet_agent


def train(steps: int) -> float:
    rng = random.Random(0)
    w, loss = 0.0, 0.0
    for _ in range(steps):
        x = rng.uniform(-1, 1)
        err = w * x - 3.0 * x
        loss = err * err
        w -= 0.1 * 2 * err * x
    return loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", help="attach to this experiment key instead of creating one")
    parser.add_argument("--steps", type=int, default=3_000_000)
    args = parser.parse_args()
    with comet_agent.monitor(experiment_key=args.experiment, project_name="examples", sample_interval_s=1.0) as agent:
        print(f"recording into {agent.url}")
        loss = train(args.steps)
        print(f"final loss {loss:.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
