"""Unexpected failures are masked as INTERNAL: no stack trace, no SQL, nothing half-written."""

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
