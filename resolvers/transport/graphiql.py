"""The GraphiQL page: what a browser gets on GET /graphql.

A GET that accepts text/html and carries no ``query`` is a person with a
browser: they get the offline GraphiQL build from FRONTEND_DIR, or a page
saying how to build it. Every other request goes on to GraphQL over HTTP.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response


def wants_graphiql(request: Request) -> bool:
    """A browser navigating to the URL, not a GraphQL client."""
    accept = request.headers.get("accept", "")
    return (
        request.method == "GET" and "text/html" in accept and not request.query_params.get("query")
    )


def graphiql_page(frontend_dir: Path) -> Response:
    """The built GraphiQL page, or how to build it (GraphQL works either way)."""
    page = frontend_dir / "graphiql.html"
    if page.exists():
        return FileResponse(page, media_type="text/html")
    return HTMLResponse(
        "<h1>GraphiQL is not built</h1><p>Run <code>make demo</code> (needs npm) to build "
        "<code>frontend-example/dist</code>; GraphQL itself works at this URL.</p>",
        status_code=200,
    )
