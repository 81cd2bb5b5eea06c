"""Role checks, one class per rule; every root field carries one (a test walks the schema)."""

from __future__ import annotations

from typing import Any, ClassVar

from strawberry.permission import BasePermission

from api.domain import Role
from api.errors import Forbidden
from resolvers.context import Info


class _RolePermission(BasePermission):
    """Allows callers holding any of ``roles`` (ADMIN always); raises FORBIDDEN otherwise."""

    roles: ClassVar[tuple[Role, ...]] = ()
    message = "Forbidden"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = info.context.principal  # raises UNAUTHENTICATED
        if not principal.has_any(*self.roles):
            wanted = " or ".join(r.value for r in (*self.roles, Role.ADMIN))
            raise Forbidden(f"This needs the {wanted} role")
        return True


class CanRead(_RolePermission):
    """Reads and subscriptions: any role within the tenant."""

    roles = (Role.VIEWER, Role.OPERATOR, Role.AGENT)


class IsOperator(_RolePermission):
    roles = (Role.OPERATOR,)


class IsAgent(_RolePermission):
    """Agent actions; services further check the caller acts as that agent."""

    roles = (Role.AGENT,)
