#!/usr/bin/env bash
# A job script: the agent wraps the training command, records it into a Comet experiment, passes
# its output through, and exits with its exit status. Configure Comet with COMET_API_KEY and
# COMET_URL_OVERRIDE (or ~/.comet.config); with neither, the local server is used.
set -euo pipefail
cd "$(dirname "$0")/.."
exec comet-agent run --project examples --tag example --sample-interval 1 -- python examples/train.py --steps 300 "$@"
