"""A browser's GET /graphql gets GraphiQL, share links included; GraphQL clients get JSON."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from resolvers.transport.graphiql import prefers_html
from tests.http.helpers import Api

CHROMIUM = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page is about HTTP negotiation, not the database: SQLite is enough."""
    yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('graphiql') / 'mark1.db'}"


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (CHROMIUM, True),
        (FIREFOX, True),
        ("text/html", True),
        ("application/graphql-response+json, application/json;q=0.9", False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0.5, application/json;q=0.4", True),
        ("text/html;q=0", False),
        ("text/html;q=nonsense", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_only_an_accept_that_ranks_html_first_is_a_browser(accept: str, html: bool) -> None:
    assert prefers_html(accept) is html


async def test_a_share_link_opens_graphiql_in_a_browser(api: Api) -> None:
    params = {"query": "query Me { me { subject } }", "variables": "{}", "operationName": "Me"}
    page = await api.client.get(api.server.url, params=params, headers={"Accept": CHROMIUM})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "GraphiQL" in page.text

    result = await api.client.get(
        api.server.url,
        params=params,
        headers={"Accept": "application/json", "Authorization": f"Bearer {api.viewer}"},
    )
    assert result.json() == {"data": {"me": {"subject": "viewer"}}}
