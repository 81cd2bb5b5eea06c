"""Service-level fixtures: principals of the roles that call the services."""

from __future__ import annotations

import pytest

from api.auth.principal import Principal
from api.domain import Role
from tests.domain.helpers import principal


@pytest.fixture
def operator(tenant: str) -> Principal:
    return principal(tenant, Role.OPERATOR, subject="operator")


@pytest.fixture
def admin(tenant: str) -> Principal:
    return principal(tenant, Role.ADMIN, subject="admin")
