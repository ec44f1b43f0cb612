"""Route modules of /api/v1: each declares its views with ``app.api.frame.api_route``.

Every module in this package is imported by ``app/api/views.py``; add a file, not an import.
"""
