"""The server process's collector policy (api/cli/server.py ``settle_heap``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from api.cli.server import YOUNG_COLLECTION_EVERY

PROBE = """
import gc, json
from api.cli.server import app_from_env
app_from_env()
print(json.dumps({"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}))
"""


def test_the_served_app_freezes_what_startup_built_and_collects_young_objects_less_often(
    tmp_path: Path,
) -> None:
    """The app ``mark1 serve`` builds (uvicorn's factory) leaves startup's objects out of
    every later collection; the probe runs in a process of its own, as the server does."""
    env = {**os.environ, "MARK1_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'heap.db'}"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["frozen"] > 50_000  # the schema, the ORM's tables, every module
    assert found["threshold"][0] == YOUNG_COLLECTION_EVERY
