"""Who is calling: the verified claims of a token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from api.domain import Role


@dataclass(frozen=True, slots=True)  # one per socket (and per cached token): no __dict__
class Principal:
    subject: str
    roles: frozenset[Role]
    tenant: str
    agent_id: str | None
    expires_at: datetime

    def has_any(self, *roles: Role) -> bool:
        return Role.ADMIN in self.roles or any(role in self.roles for role in roles)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    def acts_as(self, agent_id: str) -> bool:
        """True when the caller may act as this agent: the agent itself, or an admin."""
        return self.is_admin or (Role.AGENT in self.roles and self.agent_id == agent_id)
