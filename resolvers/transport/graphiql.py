"""The GraphiQL page: what a browser gets on GET /graphql.

A GET whose Accept prefers text/html to JSON is a person with a browser: they
get the offline GraphiQL build from FRONTEND_DIR, or a page saying how to
build it. That includes a share link, ``/graphql?query=…&variables=…&operationName=…``:
the page reads those parameters and opens with them filled in, rather than
the browser being shown the result as JSON. Every other request (GraphQL
clients send no text/html) goes on to GraphQL over HTTP.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from resolvers.transport.negotiation import prefers


def wants_graphiql(request: Request) -> bool:
    """A browser navigating to the URL (a share link too), not a GraphQL client."""
    return request.method == "GET" and prefers_html(request.headers.get("accept", ""))


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above both JSON media types."""
    return prefers(accept, "text/html")


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
