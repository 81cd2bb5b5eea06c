"""``/metrics`` (Prometheus text) and GraphQL ``systemMetrics`` read the same counters."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from api.cli.server import _multiprocess_metrics
from api.metrics import MULTIPROCESS_DIR, Metrics
from api.settings import Settings
from tests.support.graphql import WSClient, data, gql
from tests.support.server import LiveServer, live_server
from tests.support.waiting import PATIENCE, until

EVENTS = "subscription { events { id type occurredAt } }"
CREATE = "mutation($title: String!) { createTask(input: {title: $title}) { id } }"
SYSTEM_METRICS = """query { systemMetrics {
    scope connections subscriptions eventsPublished eventsDelivered tasksByStatus } }"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(live: LiveServer, token: str | None = None) -> Samples:
    """Every sample of ``/metrics``, keyed by name and labels."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{live.base}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def system_metrics(live: LiveServer, token: str) -> dict[str, Any]:
    result: dict[str, Any] = data(await gql(live.url, SYSTEM_METRICS, token=token))["systemMetrics"]
    return result


async def test_metrics_and_system_metrics_report_sockets_subscriptions_and_events(
    server: LiveServer, tenant: str
) -> None:
    operator = server.token("OPERATOR", tenant=tenant)
    async with await WSClient.connect(server.ws_url, operator) as ws:
        await ws.subscribe("1", EVENTS)
        await until(lambda: server.runtime.bus.subscriber_count == 1, what="the subscription")
        for title in ("a", "b", "c"):
            data(await gql(server.url, CREATE, {"title": title}, token=operator))
        received = [await ws.next_for("1") for _ in range(3)]
        samples = await scrape(server)
        graphql = await system_metrics(server, operator)

    assert [m["payload"]["data"]["events"]["type"] for m in received] == ["TASK_CREATED"] * 3
    assert value(samples, "mark1_websockets_open") == 1
    assert value(samples, "mark1_subscriptions_active") == 1
    assert value(samples, "mark1_events_published_total") == 3
    assert value(samples, "mark1_events_delivered_total") == 3
    assert value(samples, "mark1_slow_consumers_dropped_total") == 0
    assert value(samples, "mark1_fanout_latency_seconds_count") == 3
    assert value(samples, "mark1_fanout_latency_seconds_bucket", le="+Inf") == 3
    assert 0 < value(samples, "mark1_fanout_latency_seconds_sum") < 3
    assert graphql["connections"] == value(samples, "mark1_websockets_open")
    assert graphql["subscriptions"] == value(samples, "mark1_subscriptions_active")
    assert graphql["eventsPublished"] == value(samples, "mark1_events_published_total")
    assert graphql["eventsDelivered"] == value(samples, "mark1_events_delivered_total")
    assert graphql["tasksByStatus"]["PENDING"] == 3
    assert graphql["scope"] == "PROCESS"  # no MARK1_REDIS_URL: this process's counters


async def test_closing_the_socket_brings_the_gauges_back_to_zero(
    server: LiveServer, tenant: str
) -> None:
    operator = server.token("OPERATOR", tenant=tenant)
    async with await WSClient.connect(server.ws_url, operator) as ws:
        await ws.subscribe("1", EVENTS)
        await ws.subscribe("2", EVENTS)
        await until(
            lambda: Metrics.value(server.runtime.metrics.subscriptions) == 2,
            what="two subscriptions",
        )
        open_ = await scrape(server)

    async def gauges() -> tuple[float, float]:
        s = await scrape(server)
        return value(s, "mark1_websockets_open"), value(s, "mark1_subscriptions_active")

    deadline = time.monotonic() + PATIENCE
    while await gauges() != (0, 0):
        assert time.monotonic() < deadline, await gauges()
        await asyncio.sleep(0.05)
    graphql = await system_metrics(server, operator)

    assert value(open_, "mark1_websockets_open") == 1
    assert value(open_, "mark1_subscriptions_active") == 2
    assert (graphql["connections"], graphql["subscriptions"]) == (0, 0)


async def test_a_slow_consumer_dropped_is_counted(settings: Settings, tenant: str) -> None:
    # A buffer of one event: the three events a new workflow commits at once overflow it.
    with live_server(settings.model_copy(update={"subscriber_buffer": 1})) as live:
        operator = live.token("OPERATOR", tenant=tenant)
        async with await WSClient.connect(live.ws_url, operator) as ws:
            await ws.subscribe("1", EVENTS)
            await until(lambda: live.runtime.bus.subscriber_count == 1, what="the subscription")
            body = await gql(
                live.url,
                'mutation { startWorkflow(input: {name: "w", steps: [{name: "s"}]}) { id } }',
                token=operator,
            )
            data(body)
            messages: list[dict[str, Any]] = []
            while not messages or messages[-1]["type"] == "next":
                messages.append(await ws.next_for("1"))
            samples = await scrape(live)

    error = messages[-1]
    assert error["type"] == "error", messages
    assert error["payload"][0]["extensions"]["code"] == "SLOW_CONSUMER"
    assert value(samples, "mark1_slow_consumers_dropped_total") == 1
    assert value(samples, "mark1_events_published_total") >= 3


async def test_metrics_token_locks_the_endpoint_when_set(settings: Settings) -> None:
    secret = "s3cret-metrics-token"
    with live_server(settings.model_copy(update={"metrics_token": SecretStr(secret)})) as live:
        async with httpx.AsyncClient() as client:
            refused = await client.get(f"{live.base}/metrics")
            wrong = await client.get(
                f"{live.base}/metrics", headers={"Authorization": "Bearer nope"}
            )
        samples = await scrape(live, token=secret)

    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert value(samples, "mark1_websockets_open") == 0


def test_serve_with_workers_keeps_their_samples_in_a_directory_it_removes_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(MULTIPROCESS_DIR, raising=False)
    with _multiprocess_metrics():
        path = Path(os.environ[MULTIPROCESS_DIR])
        assert path.is_dir()
    assert not path.exists()
    assert MULTIPROCESS_DIR not in os.environ


def test_serve_with_workers_empties_the_operators_directory_of_a_past_runs_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale, other = tmp_path / "counter_4242.db", tmp_path / "README"
    stale.write_bytes(b"\0" * 8)
    other.write_text("kept")
    monkeypatch.setenv(MULTIPROCESS_DIR, str(tmp_path))
    with _multiprocess_metrics():
        assert os.environ[MULTIPROCESS_DIR] == str(tmp_path)
        assert not stale.exists()
    assert other.read_text() == "kept"
    assert os.environ[MULTIPROCESS_DIR] == str(tmp_path)
