"""/api/v1: the operator, customer-admin, auditor and portal API (issue 3).

Layout:

- ``views.py``        the blueprint; imports every module of ``routes/``
- ``frame.py``        ``api_route`` (auth, permission, org scope, validation, transaction)
                      and ``ApiContext``; its docstring shows how to add a route
- ``permissions.py``  the one table of permission -> roles
- ``errors.py``       RFC 9457 problem JSON for every error under /api/v1
- ``pagination.py``   ``paginate`` and ``Page``: opaque cursors over a stable ordering
- ``schemas.py``      shared schemas: ``PageArgs``, ``TimeRangeArgs``, ``ProblemSchema``
- ``openapi.py``      the OpenAPI 3.1 description built from the declarations
- ``ratelimit.py``    per-key and per-SCIM-token limits, counted in the database
- ``authlimit.py``    failed authentications per client address (SCIM, API, OAuth)
- ``routes/``         one module per resource: orgs, directories, roles, apikeys, audit ...
"""
