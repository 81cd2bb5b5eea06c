"""mark1_client: the Python SDK for Mark-1 Realtime — typed queries and mutations, resumable
subscriptions over graphql-transport-ws, and an ``Agent`` helper.

    async with Mark1Client("http://127.0.0.1:8000/graphql", token) as client:
        task = await client.create_task("Summarize the report", capability="summarize")
        async for event in client.events(after=0):
            ...
"""

from __future__ import annotations

from mark1_client.agent import Agent
from mark1_client.client import Mark1Client
from mark1_client.endpoint import TokenProvider, TokenSource
from mark1_client.errors import (
    BadUserInput,
    ClientError,
    Conflict,
    EventsPruned,
    Forbidden,
    Internal,
    Mark1Error,
    NotFound,
    PersistedQueryNotFound,
    ProtocolError,
    RateLimited,
    SlowConsumer,
    TransportError,
    Unauthenticated,
    Unavailable,
    is_transient,
)
from mark1_client.retry import Backoff
from mark1_client.subscriptions import Subscription
from mark1_client.types import (
    Agent as AgentInfo,
)
from mark1_client.types import (
    AgentRef,
    AgentRegistration,
    AgentSnapshot,
    AgentStatus,
    Event,
    EventFilter,
    EventType,
    MetricsScope,
    Page,
    Role,
    SystemMetrics,
    Task,
    TaskRef,
    TaskSnapshot,
    TaskStatus,
    Viewer,
    Workflow,
    WorkflowRef,
    WorkflowSnapshot,
    WorkflowStatus,
    WorkflowStep,
    WorkflowStepInput,
    WorkflowStepSnapshot,
)

__all__ = [
    "Agent",
    "AgentInfo",
    "AgentRef",
    "AgentRegistration",
    "AgentSnapshot",
    "AgentStatus",
    "Backoff",
    "BadUserInput",
    "ClientError",
    "Conflict",
    "Event",
    "EventFilter",
    "EventType",
    "EventsPruned",
    "Forbidden",
    "Internal",
    "Mark1Client",
    "Mark1Error",
    "MetricsScope",
    "NotFound",
    "Page",
    "PersistedQueryNotFound",
    "ProtocolError",
    "RateLimited",
    "Role",
    "SlowConsumer",
    "Subscription",
    "SystemMetrics",
    "Task",
    "TaskRef",
    "TaskSnapshot",
    "TaskStatus",
    "TokenProvider",
    "TokenSource",
    "TransportError",
    "Unauthenticated",
    "Unavailable",
    "Viewer",
    "Workflow",
    "WorkflowRef",
    "WorkflowSnapshot",
    "WorkflowStatus",
    "WorkflowStep",
    "WorkflowStepInput",
    "WorkflowStepSnapshot",
    "is_transient",
]
