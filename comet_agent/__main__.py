"""``python -m comet_agent`` runs the command-line interface."""

from comet_agent.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
