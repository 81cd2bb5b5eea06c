"""The GraphQL documents the SDK sends, built from the dataclasses they decode into.

``tests/client`` validates every document here against ``schema.graphql``.
"""

from __future__ import annotations

from mark1_client.codec import selection
from mark1_client.types import (
    Agent,
    AgentRegistration,
    Event,
    SystemMetrics,
    Task,
    Viewer,
    Workflow,
)


def _page(kind: type) -> str:
    return (
        f"edges {{ node {{ {selection(kind)} }} }} pageInfo {{ hasNextPage endCursor }} totalCount"
    )


_TASK = selection(Task)
_AGENT = selection(Agent)
_WORKFLOW = selection(Workflow)
_EVENT = selection(Event)

ME = f"query Me {{ me {{ {selection(Viewer)} }} }}"
TASK = f"query Task($id: ID!) {{ task(id: $id) {{ {_TASK} }} }}"
TASKS = (
    "query Tasks($status: [TaskStatus!], $agentId: ID, $workflowId: ID, $first: Int, "
    "$after: String) { tasks(status: $status, agentId: $agentId, workflowId: $workflowId, "
    f"first: $first, after: $after) {{ {_page(Task)} }} }}"
)
AGENT = f"query Agent($id: ID!) {{ agent(id: $id) {{ {_AGENT} }} }}"
AGENTS = (
    "query Agents($status: [AgentStatus!], $capability: String, $first: Int, $after: String) "
    "{ agents(status: $status, capability: $capability, first: $first, after: $after) "
    f"{{ {_page(Agent)} }} }}"
)
WORKFLOW = f"query Workflow($id: ID!) {{ workflow(id: $id) {{ {_WORKFLOW} }} }}"
WORKFLOWS = (
    "query Workflows($status: [WorkflowStatus!], $first: Int, $after: String) "
    f"{{ workflows(status: $status, first: $first, after: $after) {{ {_page(Workflow)} }} }}"
)
EVENTS = (
    "query Events($filter: EventFilter, $first: Int, $after: String) "
    f"{{ events(filter: $filter, first: $first, after: $after) {{ {_page(Event)} }} }}"
)
# Event ids start at 1 and are consecutive per tenant (DESIGN.md), so the count is the head.
HEAD = "query Head { events(first: 1) { edges { node { id } } totalCount } }"
SYSTEM_METRICS = f"query SystemMetrics {{ systemMetrics {{ {selection(SystemMetrics)} }} }}"

CREATE_TASK = (
    f"mutation CreateTask($input: CreateTaskInput!) {{ createTask(input: $input) {{ {_TASK} }} }}"
)
CANCEL_TASK = f"mutation CancelTask($id: ID!) {{ cancelTask(id: $id) {{ {_TASK} }} }}"
REGISTER_AGENT = (
    "mutation RegisterAgent($input: RegisterAgentInput!) { registerAgent(input: $input) "
    f"{{ {selection(AgentRegistration)} }} }}"
)
HEARTBEAT = f"mutation Heartbeat($agentId: ID!) {{ heartbeat(agentId: $agentId) {{ {_AGENT} }} }}"
CLAIM_TASK = f"mutation ClaimTask($agentId: ID!) {{ claimTask(agentId: $agentId) {{ {_TASK} }} }}"
REPORT_PROGRESS = (
    "mutation ReportProgress($taskId: ID!, $progress: Float!, $message: String) "
    f"{{ reportProgress(taskId: $taskId, progress: $progress, message: $message) {{ {_TASK} }} }}"
)
COMPLETE_TASK = (
    "mutation CompleteTask($taskId: ID!, $result: JSON) "
    f"{{ completeTask(taskId: $taskId, result: $result) {{ {_TASK} }} }}"
)
FAIL_TASK = (
    "mutation FailTask($taskId: ID!, $error: String!, $retry: Boolean) "
    f"{{ failTask(taskId: $taskId, error: $error, retry: $retry) {{ {_TASK} }} }}"
)
START_WORKFLOW = (
    "mutation StartWorkflow($input: StartWorkflowInput!) "
    f"{{ startWorkflow(input: $input) {{ {_WORKFLOW} }} }}"
)
CANCEL_WORKFLOW = (
    f"mutation CancelWorkflow($id: ID!) {{ cancelWorkflow(id: $id) {{ {_WORKFLOW} }} }}"
)

EVENTS_SUBSCRIPTION = (
    "subscription Events($filter: EventFilter, $after: ID) "
    f"{{ events(filter: $filter, after: $after) {{ {_EVENT} }} }}"
)
# What wakes an idle Agent: a task becomes PENDING (created or requeued).
AGENT_WAKE = "subscription AgentWake { taskUpdates(status: [PENDING]) { id capability } }"

ALL: dict[str, str] = {
    name: value
    for name, value in globals().items()
    if name.isupper() and not name.startswith("_") and isinstance(value, str)
}
