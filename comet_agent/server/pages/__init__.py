"""HTML pages of the local server: an experiment page and workspace / project indexes.

Paths are the ones ``APIExperiment.url`` builds: ``/{workspace}/{project}/{experiment key}``
(``/{workspace}/{project}/archive/{experiment key}`` for an archived one), plus the indexes
``/`` (the key's workspaces), ``/{workspace}`` and ``/{workspace}/{project}``.

Offline by construction: the only script and stylesheet are ``static/pages.js`` and
``static/pages.css`` shipped in this package (a small SVG chart renderer written for it; no
third-party front-end code). Every page sends ``Content-Security-Policy: default-src 'none';
script-src 'self'; style-src 'self'; ...``: no inline script or style runs and nothing outside
the server can be fetched.

Modules: ``access`` (keys, sessions, login tokens, the login form), ``render`` (escaping, the
layout, formats), ``charts`` (which chart shows which metric), ``experiment`` and ``indexes``
(the pages), ``static`` (the JS and CSS), ``routes`` (where each is mounted).
"""
