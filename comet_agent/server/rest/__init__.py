"""The Comet REST v2 endpoints the official SDK uses, one module per resource.

``common`` holds what every handler uses (errors, JSON responses, input readers, auth, atomic
writes); ``account``, ``experiments``, ``metrics``, ``parameters``, ``others``, ``tags``,
``texts``, ``output``, ``git``, ``system_details``, ``assets``, ``models`` serve their resource;
``clientlib`` serves the live ``comet_ml.Experiment``'s own endpoints and ``admin`` the server's
intervals. ``routes.add_routes()`` mounts them all.
"""
