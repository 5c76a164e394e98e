"""The local Comet-compatible server (``comet-agent server``): REST v2 routes over a SQLite store."""
