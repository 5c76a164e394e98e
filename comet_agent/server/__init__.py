"""The local Comet-compatible server (``comet-agent server``).

``app`` (the aiohttp application and ``LocalServer``), ``state`` (what handlers share),
``store`` (SQLite), ``rest/`` (the Comet REST v2 and clientlib endpoints, one module per
resource), ``pages/`` (the HTML pages) and ``static/`` (their script and stylesheet).
"""
