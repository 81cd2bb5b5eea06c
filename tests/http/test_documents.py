"""Parse and validation are cached by document text (issue #8): a request whose document
the server has seen before is neither parsed nor validated again, whatever its variables."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from graphql.language.parser import Parser

from resolvers.schema import STATS
from tests.http.helpers import Api


def _counts() -> tuple[int, int]:
    return STATS.parses, STATS.validations


async def test_a_repeated_document_is_neither_parsed_nor_validated_again(api: Api) -> None:
    # A document text no earlier test sent, so the first request must miss the caches.
    document = f"query Cached{uuid.uuid4().hex} {{ me {{ subject tenant }} }}"
    before = _counts()
    first = await api.ok(document)
    parsed, validated = _counts()
    assert parsed > before[0] and validated == before[1] + 1

    for _ in range(3):
        assert await api.ok(document) == first
    assert _counts() == (parsed, validated)


@pytest.fixture
def real_parses(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Every document graphql-core parses in this process (the server runs in it), by any
    caller: the transport's operation check as well as execution."""
    count = 0
    parse_document = Parser.parse_document

    def counted(self: Parser, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return parse_document(self, *args, **kwargs)

    monkeypatch.setattr(Parser, "parse_document", counted)
    return lambda: count


async def test_a_request_parses_its_document_once_and_a_repeat_not_at_all(
    api: Api, real_parses: Callable[[], int]
) -> None:
    """The transport's check of which operation a request selects shares the cache."""
    query = f"query Once{uuid.uuid4().hex} {{ me {{ subject }} }}"
    mutation = (
        f"mutation Once{uuid.uuid4().hex}($title: String!) "
        "{ createTask(input: {title: $title}) { id } }"
    )
    for document, variables in ((query, None), (mutation, {"title": "t"})):
        before = real_parses()
        await api.ok(document, variables)
        assert real_parses() == before + 1
        for _ in range(3):
            await api.ok(document, variables)
        assert real_parses() == before + 1


async def test_new_variables_reuse_the_cached_document(api: Api) -> None:
    """An agent's reportProgress sends one document with new variables each time."""
    document = (
        f"mutation Create{uuid.uuid4().hex}($title: String!) "
        "{ createTask(input: {title: $title}) { id title } }"
    )
    await api.ok(document, {"title": "first"})
    counts = _counts()
    titles = [f"task {i}" for i in range(3)]
    for title in titles:
        created = await api.ok(document, {"title": title})
        assert created["createTask"]["title"] == title
    assert _counts() == counts


async def test_a_cached_document_still_refuses_an_impossible_id(api: Api) -> None:
    """The ID limit reads the variables of every request, not what was cached."""
    document = f"query Task{uuid.uuid4().hex}($id: ID!) {{ task(id: $id) {{ id }} }}"
    assert (await api.ok(document, {"id": "no-such-task"}))["task"] is None
    counts = _counts()
    body = await api.call(document, {"id": "x" * 201})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await api.call(document, {"id": "bad\u0000id"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert _counts() == counts


async def test_a_cached_invalid_document_keeps_failing_validation(api: Api) -> None:
    document = f"query Bad{uuid.uuid4().hex} {{ me {{ noSuchField }} }}"
    for _ in range(2):
        body = await api.call(document)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "noSuchField" in body["errors"][0]["message"]
