"""Tables. Every row carries its tenant; timestamps are set by the application."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, text
from sqlmodel import Field, SQLModel

from api.db.types import UTCDateTime


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


class TenantCounter(SQLModel, table=True):
    """Per-tenant event sequence; updating it row-locks, so ids follow commit order."""

    __tablename__ = "tenant_counter"

    tenant: str = Field(primary_key=True, max_length=128)
    last_event_id: int = 0


class InstallRow(SQLModel, table=True):
    """One row, made by the migrations: the id every process of this install shares.

    Bus messages carry it, so installs sharing a broker channel ignore each other.
    """

    __tablename__ = "install"

    id: str = Field(primary_key=True, max_length=36)


class TaskRow(SQLModel, table=True):
    __tablename__ = "task"
    __table_args__ = (
        # The claim's order (api/db/tasks.py): highest priority, then oldest, then id.
        Index("ix_task_claim", "tenant", "status", text("priority DESC"), "created_at", "id"),
        Index("ix_task_page", "tenant", "created_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=36)
    tenant: str = Field(max_length=128)
    title: str = Field(max_length=500)
    status: str = Field(max_length=16)
    progress: float = 0.0
    message: str | None = Field(default=None, max_length=2000)
    priority: int = 0
    capability: str | None = Field(default=None, max_length=100)
    input: Any = _json()
    result: Any = _json()
    error: str | None = Field(default=None, max_length=5000)
    attempts: int = 0
    max_attempts: int = 3
    agent_id: str | None = Field(default=None, max_length=36, index=True)
    workflow_id: str | None = Field(default=None, max_length=36, index=True)
    step_index: int | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)


class AgentRow(SQLModel, table=True):
    __tablename__ = "agent"
    __table_args__ = (Index("ix_agent_page", "tenant", "registered_at", "id"),)

    id: str = Field(primary_key=True, max_length=36)
    tenant: str = Field(max_length=128)
    name: str = Field(max_length=200)
    capabilities: Any = _json(nullable=False)
    status: str = Field(max_length=16)
    last_heartbeat_at: datetime | None = _ts(nullable=True)
    registered_at: datetime = _ts()
    current_task_id: str | None = Field(default=None, max_length=36)
    metadata_: Any = Field(default=None, sa_column=Column("metadata", JSON, nullable=True))


class WorkflowRow(SQLModel, table=True):
    __tablename__ = "workflow"
    __table_args__ = (Index("ix_workflow_page", "tenant", "created_at", "id"),)

    id: str = Field(primary_key=True, max_length=36)
    tenant: str = Field(max_length=128)
    name: str = Field(max_length=200)
    status: str = Field(max_length=16)
    progress: float = 0.0
    current_step: int | None = None
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)


class WorkflowStepRow(SQLModel, table=True):
    __tablename__ = "workflow_step"

    workflow_id: str = Field(primary_key=True, max_length=36)
    index: int = Field(primary_key=True)
    tenant: str = Field(max_length=128)
    name: str = Field(max_length=200)
    capability: str | None = Field(default=None, max_length=100)
    input: Any = _json()
    status: str = Field(max_length=16)
    task_id: str | None = Field(default=None, max_length=36)


class EventRow(SQLModel, table=True):
    """The outbox and the history: written in the same transaction as the change."""

    __tablename__ = "event"
    __table_args__ = (
        Index("ix_event_task", "tenant", "task_id", "id"),
        Index("ix_event_workflow", "tenant", "workflow_id", "id"),
        Index("ix_event_agent", "tenant", "agent_id", "id"),
    )

    tenant: str = Field(primary_key=True, max_length=128)
    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    type: str = Field(max_length=40)
    occurred_at: datetime = _ts()
    actor: str = Field(max_length=300)
    task_id: str | None = Field(default=None, max_length=36)
    agent_id: str | None = Field(default=None, max_length=36)
    workflow_id: str | None = Field(default=None, max_length=36)
    data: Any = _json(nullable=False)
    snapshots: Any = _json(nullable=False)
