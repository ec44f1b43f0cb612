"""The /api/v1 blueprint. Routes live in modules of ``app/api/routes/``, all imported here.

See ``app/api/frame.py`` for how to declare a route.
"""

from __future__ import annotations

import importlib
import pkgutil

from flask import Blueprint, Response, current_app, json

from app.api.errors import register_problem_handlers
from app.api.frame import api_route

bp = Blueprint("api", __name__, url_prefix="/api/v1")
register_problem_handlers(bp)


@api_route(bp, "/openapi.json", permission=None, public=True, tags=["meta"],
           summary="This API's OpenAPI 3.1 description (no key needed)",
           produces={"application/json": "The OpenAPI 3.1 description."})
def openapi_json() -> Response:
    """The description generated from the route declarations (OpenAPI 3.1 §4.8.5 Server).

    The server URL is ``app.base_url``, as every URL Roster gives out: never the request's
    Host header, which any client may set (and a cache would keep the forged document).
    """
    from app.api.openapi import build_spec

    base_url = current_app.config["ROSTER"]["app"]["base_url"].rstrip("/")
    return Response(json.dumps(build_spec(base_url or "/")), mimetype="application/json")


def _import_routes() -> None:
    """Import every route module so its ``api_route`` declarations register on ``bp``."""
    from app.api import routes

    for module in sorted(pkgutil.iter_modules(routes.__path__), key=lambda m: m.name):
        importlib.import_module(f"{routes.__name__}.{module.name}")


_import_routes()
