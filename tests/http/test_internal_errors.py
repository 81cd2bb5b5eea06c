"""Unexpected failures are masked as INTERNAL: no stack trace, no SQL, nothing half-written.

A value of the server's own that its schema cannot show (a priority beyond GraphQL's
32-bit Int) is one of them; the same value sent by a client stays BAD_USER_INPUT.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from api.settings import Settings
from tests.http.helpers import Api
from tests.support.server import TEST_SECRET, live_server


async def test_database_failure_is_masked_as_internal(
    tmp_path: Path, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    db_file = tmp_path / "broken.db"
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{db_file}",
        jwt_secret=TEST_SECRET,
    )
    with live_server(settings) as server:
        async with Api(server, tenant) as api:
            await api.create_task("before")
            # Break the database under the running server, as a bad migration would.
            with sqlite3.connect(db_file) as conn:
                conn.execute("DROP TABLE workflow_step")

            with caplog.at_level(logging.ERROR, logger="mark1.errors"):
                write = await api.call(
                    'mutation { startWorkflow(input: {name: "w", steps: [{name: "s"}]}) { id } }'
                )
                read = await api.call("{ workflows { edges { node { id steps { name } } } } }")

            for body in (write, read):
                assert body["data"] is None
                (error,) = body["errors"]
                assert error["extensions"] == {"code": "INTERNAL"}
                assert error["message"] == "Internal server error"
                text = str(body).lower()
                for leak in (
                    "workflow_step",
                    "select",
                    "insert",
                    "sqlite",
                    "traceback",
                    "operationalerror",
                ):
                    assert leak not in text
            # The failed mutation wrote nothing: no workflow, no event.
            assert await api.event_count() == 1
            assert (await api.ok("{ tasks { totalCount } }"))["tasks"]["totalCount"] == 1
    # The real cause is logged for operators.
    assert "workflow_step" in caplog.text


def _sqlite_settings(tmp_path: Path) -> tuple[Settings, Path]:
    db_file = tmp_path / "own.db"
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{db_file}",
        jwt_secret=TEST_SECRET,
    )
    return settings, db_file


async def test_a_stored_value_graphql_cannot_show_is_internal_masked_and_logged(
    tmp_path: Path, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLite: PostgreSQL's INTEGER column could not even hold the value.
    settings, db_file = _sqlite_settings(tmp_path)
    with live_server(settings) as server:
        async with Api(server, tenant) as api:
            task_id = (await api.create_task("unshowable"))["id"]
            # A row written past the services' validation, as a bad script or migration would.
            with sqlite3.connect(db_file) as conn:
                changed = conn.execute(
                    "UPDATE task SET priority = ? WHERE id = ?", (2**31, task_id)
                ).rowcount
            assert changed == 1

            with caplog.at_level(logging.ERROR, logger="mark1.errors"):
                one = await api.call(
                    "query($id: ID!) { task(id: $id) { id priority } }", {"id": task_id}
                )
                listed = await api.call("{ tasks { edges { node { title priority } } } }")

            assert one["data"] == {"task": None}
            assert listed["data"] is None
            for body, path in (
                (one, ["task", "priority"]),
                (listed, ["tasks", "edges", 0, "node", "priority"]),
            ):
                (error,) = body["errors"]
                assert error["extensions"] == {"code": "INTERNAL"}, error
                assert error["message"] == "Internal server error"
                assert error["path"] == path
                assert "2147483648" not in str(body)
    # Logged for operators, with where it happened and why.
    failures = [r for r in caplog.records if r.name == "mark1.errors"]
    assert [r.args for r in failures] == [
        (["task", "priority"],),
        (["tasks", "edges", 0, "node", "priority"],),
    ]
    assert "Int cannot represent non 32-bit signed integer value: 2147483648" in caplog.text


async def test_an_argument_beyond_graphql_int_is_still_bad_user_input(
    tmp_path: Path, tenant: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings, _ = _sqlite_settings(tmp_path)
    with live_server(settings) as server:
        async with Api(server, tenant) as api:
            with caplog.at_level(logging.ERROR, logger="mark1.errors"):
                cases = [
                    # Refused by validation, before execution.
                    (await api.call("{ tasks(first: 2147483648) { totalCount } }"), "2147483648"),
                    # Refused while coercing the variables, before any field runs.
                    (
                        await api.call(
                            "query($n: Int) { tasks(first: $n) { totalCount } }", {"n": 2**31}
                        ),
                        "$n",
                    ),
                    # Refused while coercing the field's arguments, as it executes: a
                    # variable with a default may be sent null into a non-null argument.
                    (
                        await api.call(
                            'query($id: ID = "x") { task(id: $id) { id } }', {"id": None}
                        ),
                        "Argument 'id'",
                    ),
                ]
            for body, word in cases:
                (error,) = body["errors"]
                assert error["extensions"] == {"code": "BAD_USER_INPUT"}, error
                assert word in error["message"], error
                assert not any((body.get("data") or {}).values())
    assert not [r for r in caplog.records if r.name == "mark1.errors"]
