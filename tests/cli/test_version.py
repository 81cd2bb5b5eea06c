"""``mark1 --version`` reports the installed package, as pyproject.toml declares it."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

from tests.ops.serve import run_mark1

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_the_package_version(tmp_path: Path) -> None:
    run = run_mark1("--version", cwd=tmp_path)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

    assert run.returncode == 0, run.stderr
    assert run.stdout == f"mark1 {declared}\n"
    assert version("mark1") == declared
