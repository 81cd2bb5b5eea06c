"""The libraries whose internals we override are installed, and required, only within the
versions those overrides were written for (api/overrides.py)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from api.overrides import OVERRIDES

ROOT = Path(__file__).resolve().parents[2]


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    parsed = (Requirement(line) for line in project["dependencies"])
    return {canonicalize_name(r.name): r for r in parsed}


@pytest.mark.parametrize("distribution", sorted(OVERRIDES))
def test_installed_version_is_inside_the_range_the_overrides_were_written_for(
    distribution: str,
) -> None:
    allowed = SpecifierSet(OVERRIDES[distribution].versions)
    installed = version(distribution)

    assert installed in allowed, (
        f"{distribution} {installed} is outside {allowed}, the versions whose internals "
        f"{'; '.join(OVERRIDES[distribution].where)} were written for"
    )


@pytest.mark.parametrize("distribution", sorted(OVERRIDES))
def test_pyproject_bounds_the_dependency_to_that_range(distribution: str) -> None:
    requirement = _requirements()[canonicalize_name(distribution)]
    allowed = SpecifierSet(OVERRIDES[distribution].versions)

    assert requirement.specifier == allowed, (
        f"pyproject.toml requires {requirement}; api/overrides.py says {allowed}"
    )
    # An upper bound, not only a floor: a release outside it cannot be resolved silently.
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in allowed), allowed


def test_the_check_would_notice_a_version_outside_the_range() -> None:
    allowed = SpecifierSet(OVERRIDES["strawberry-graphql"].versions)

    assert "0.342.0" not in allowed and "0.340.9" not in allowed
    assert version("strawberry-graphql") in allowed
