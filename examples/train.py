"""A small CPU-only "training" loop: gradient descent on a least-squares problem, in pure Python.

Run it under the agent, which records the host, packages, git state, the process's CPU and
memory, and this script's output into a Comet experiment:

    comet-agent run -- python examples/train.py --steps 200
"""

from __future__ import annotations

import argparse
import random
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    true_w = [rng.uniform(-1, 1) for _ in range(8)]
    data = []
    for _ in range(2000):
        x = [rng.uniform(-1, 1) for _ in range(8)]
        data.append((x, sum(a * b for a, b in zip(true_w, x)) + rng.gauss(0, 0.01)))
    w = [0.0] * 8
    started = time.monotonic()
    for step in range(1, args.steps + 1):
        grad = [0.0] * 8
        loss = 0.0
        for x, y in data:
            err = sum(a * b for a, b in zip(w, x)) - y
            loss += err * err
            for i in range(8):
                grad[i] += 2 * err * x[i]
        w = [wi - args.lr * g / len(data) for wi, g in zip(w, grad)]
        if step % 50 == 0 or step == args.steps:
            print(f"step {step} loss {loss / len(data):.6f}", flush=True)
    print(f"done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
