"""The /api/v1 blueprint. Routes live in modules of ``app/api/routes/``, all imported here.

See ``app/api/frame.py`` for how to declare a route.
"""

from __future__ import annotations

import importlib
import pkgutil

from flask import Blueprint, Response, json, request

from app.api.errors import register_problem_handlers
from app.api.frame import api_route

bp = Blueprint("api", __name__, url_prefix="/api/v1")
register_problem_handlers(bp)


@api_route(bp, "/openapi.json", permission=None, public=True, tags=["meta"],
           summary="This API's OpenAPI 3.1 description (no key needed)",
           produces={"application/json": "The OpenAPI 3.1 description."})
def openapi_json() -> Response:
    """The description generated from the route declarations."""
    from app.api.openapi import build_spec

    return Response(json.dumps(build_spec(request.host_url.rstrip("/") or "/")),
                    mimetype="application/json")


def _import_routes() -> None:
    """Import every route module so its ``api_route`` declarations register on ``bp``."""
    from app.api import routes

    for module in sorted(pkgutil.iter_modules(routes.__path__), key=lambda m: m.name):
        importlib.import_module(f"{routes.__name__}.{module.name}")


_import_routes()
