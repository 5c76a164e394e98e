"""Spool and sender: records on their way to the server."""
