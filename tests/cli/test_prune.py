"""``mark1 db prune --before``: old events go in batches, each tenant's newest stays."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import typer

from api.cli.main import parse_cutoff
from tests.ops.serve import run_mark1
from tests.support import databases
from tests.support.outbox import backdate, event_ids, seed


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of this test's own: a prune acts on every tenant."""
    with databases.database(request.param, tmp_path) as url:
        yield url


@pytest.mark.timeout(300)  # four `mark1` starts, each seconds long under load
async def test_prune_deletes_old_events_by_id_or_time_and_keeps_each_tenants_newest(
    database_url: str, tmp_path: Path
) -> None:
    def mark1(*args: str) -> str:
        run = run_mark1("db", "prune", *args, cwd=tmp_path, MARK1_DATABASE_URL=database_url)
        assert run.returncode == 0, (args, run.stdout, run.stderr)
        assert "Traceback" not in run.stderr, run.stderr
        return run.stdout

    await seed(database_url, tmp_path, {"acme": 10, "globex": 3})

    planned = mark1("--before", "6", "--dry-run")
    assert "tenant acme: would delete 5 events (ids 1 to 5; oldest kept 6)" in planned
    assert "tenant globex: would delete 2 events (ids 1 to 2; oldest kept 3)" in planned
    assert "would prune 7 events (nothing deleted)" in planned
    assert await event_ids(database_url) == {"acme": list(range(1, 11)), "globex": [1, 2, 3]}

    # By id, per tenant, in batches of two; globex's newest (3) is below the cutoff and stays.
    pruned = mark1("--before", "6", "--batch", "2")
    assert "tenant acme: 5/5 deleted" in pruned and "tenant globex: 2/2 deleted" in pruned
    assert "pruned 7 events" in pruned
    assert await event_ids(database_url) == {"acme": [6, 7, 8, 9, 10], "globex": [3]}

    # By time, one tenant: 6 and 7 happened in 2020; 8 onwards now.
    await backdate(database_url, "acme", through=7, to=datetime(2020, 5, 1, tzinfo=UTC))
    pruned = mark1("--before", "2021-01-01T00:00:00Z", "--tenant", "acme")
    assert "tenant acme: 2/2 deleted" in pruned and "globex" not in pruned
    assert await event_ids(database_url) == {"acme": [8, 9, 10], "globex": [3]}

    # A cutoff after everything: only the newest event of each tenant stays.
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert "pruned 2 events" in mark1("--before", future)
    assert await event_ids(database_url) == {"acme": [10], "globex": [3]}


def test_a_cutoff_is_an_event_id_or_an_iso_time_in_utc_unless_zoned() -> None:
    assert parse_cutoff("5000") == 5000
    assert parse_cutoff("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_cutoff("2026-01-31T12:00:00+02:00") == datetime(
        2026, 1, 31, 12, tzinfo=timezone(timedelta(hours=2))
    )
    for bad in ("yesterday", "-5", "5e3", "²"):
        with pytest.raises(typer.BadParameter, match="neither an event id nor an ISO-8601"):
            parse_cutoff(bad)
