"""Fan-out side by side: Mark-1, the Node graphql-js + graphql-ws reference, the raw floor.

    uv run python -m bench.compare [--subscribers 1000] [--events 50] [--only NAME ...]

One run, one machine, every figure beside its peer, so the ratios hold however
noisy a shared machine is. Each scenario gets a fresh server process:

| scenario | subscribers | what |
|---|---|---|
| burst identical | 1,000 x 50 | ``taskUpdates``, one document; ``reportProgress``, <= 8 in flight |
| burst distinct | 1,000 x 50 | one alias per socket: 1,000 documents |
| burst events (after) | 1,000 x 50 | ``events`` live-only vs ``events(after: "0")`` |
| paced identical / events (after) | 200 at 200 events/s | latency at a sustainable rate |
| paced 10k identical (``--ten-thousand``) | 10,000 at 5 events/s | memory per connection, latency |

Servers: ``mark1 serve`` (SQLite, memory bus), ``bench/node-reference`` (Node
graphql-js + graphql-ws, no auth, no database: ``npm ci`` there first), and the
raw uvicorn WebSocket floor (bench/floor.py: no GraphQL at all). Writes
``bench/results/compare.json`` and ``compare.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer

from bench import report
from bench.fanout import RESULTS, Publish, Scenario, _raise_fd_limit, bench
from bench.server import Target, spawn, spawn_command

NODE_DIR = Path(__file__).resolve().parent / "node-reference"

TASK_FIELDS = "id progress message at: updatedAt"
IDENTICAL = f"subscription Bench {{ taskUpdates {{ {TASK_FIELDS} }} }}"
EVENTS = (
    "subscription Bench($after: ID) { events(after: $after) "
    "{ id type at: occurredAt task { id progress message } } }"
)
PROGRESS = (
    "mutation($t: ID!, $p: Float!, $m: String) "
    "{ reportProgress(taskId: $t, progress: $p, message: $m) { id } }"
)

app = typer.Typer(add_completion=False)


def _subscribe(query: str, variables: dict[str, Any] | None = None) -> str:
    payload = {"query": query, "variables": variables or {}}
    return orjson.dumps({"id": "1", "type": "subscribe", "payload": payload}).decode()


def _identical(i: int) -> str:
    return _subscribe(IDENTICAL)


def _distinct(i: int) -> str:
    return _subscribe(f"subscription Bench {{ t{i}: taskUpdates {{ {TASK_FIELDS} }} }}")


def _events_live(i: int) -> str:
    return _subscribe(EVENTS)


def _events_after(i: int) -> str:
    return _subscribe(EVENTS, {"after": "0"})


async def _post(
    client: httpx.AsyncClient, target: Target, query: str, variables: dict[str, Any], token: str
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        target.url, json={"query": query, "variables": variables}, headers=headers
    )
    body: dict[str, Any] = response.json()
    if body.get("errors"):
        raise RuntimeError(f"{query.split('(')[0]} failed: {body['errors'][0]}")
    return body


def _progress_publisher(target: Target, task_id: str, token: str) -> Publish:
    counter = 0

    async def publish(client: httpx.AsyncClient, label: str) -> None:
        nonlocal counter
        counter += 1
        variables = {"t": task_id, "p": (counter % 1000) / 1000, "m": label}
        await _post(client, target, PROGRESS, variables, token)

    return publish


async def _mark1_prepare(client: httpx.AsyncClient, target: Target, operator: str) -> Publish:
    """An agent holding a RUNNING task: reportProgress is what agents send most."""
    registered = await _post(
        client,
        target,
        'mutation { registerAgent(input: {name: "bench", capabilities: []}) '
        "{ agent { id } token } }",
        {},
        operator,
    )
    agent = registered["data"]["registerAgent"]
    await _post(
        client,
        target,
        'mutation { createTask(input: {title: "bench-task"}) { id } }',
        {},
        operator,
    )
    claimed = await _post(
        client,
        target,
        "mutation($a: ID!) { claimTask(agentId: $a) { id } }",
        {"a": agent["agent"]["id"]},
        agent["token"],
    )
    return _progress_publisher(target, claimed["data"]["claimTask"]["id"], agent["token"])


async def _node_prepare(client: httpx.AsyncClient, target: Target, _: str) -> Publish:
    created = await _post(
        client, target, 'mutation { createTask(title: "bench-task") { id } }', {}, ""
    )
    return _progress_publisher(target, created["data"]["createTask"]["id"], "")


async def _floor_prepare(client: httpx.AsyncClient, target: Target, _: str) -> Publish:
    return _progress_publisher(target, "1", "")


@dataclass(frozen=True)
class Case:
    name: str
    server: str  # mark1 | node | floor
    subscribe: Callable[[int], str]
    paced: bool = False
    large: bool = False  # 10,000 sockets: only with --ten-thousand


CASES = [
    Case("burst identical", "floor", _identical),
    Case("burst identical", "node", _identical),
    Case("burst identical", "mark1", _identical),
    Case("burst distinct", "node", _distinct),
    Case("burst distinct", "mark1", _distinct),
    Case("burst events", "mark1", _events_live),
    Case("burst events after", "mark1", _events_after),
    Case("paced identical", "node", _identical, paced=True),
    Case("paced identical", "mark1", _identical, paced=True),
    Case("paced events", "mark1", _events_live, paced=True),
    Case("paced events after", "mark1", _events_after, paced=True),
    Case("paced 10k identical", "mark1", _identical, paced=True, large=True),
]


def _start(server: str) -> Target:
    if server == "mark1":
        return spawn(database_url=None, broadcast_url=None)
    if server == "node":
        node = shutil.which("node")
        if node is None or not (NODE_DIR / "node_modules").exists():
            raise RuntimeError("the Node reference needs node and `npm ci` in bench/node-reference")
        return spawn_command(
            [node, "server.mjs"], cwd=NODE_DIR, description="Node graphql-js + graphql-ws"
        )
    return spawn_command(
        [sys.executable, "-m", "bench.floor"], description="raw uvicorn WebSocket floor"
    )


def _prepare(server: str) -> Any:
    return {"mark1": _mark1_prepare, "node": _node_prepare, "floor": _floor_prepare}[server]


async def _run_case(
    case: Case,
    *,
    n: int,
    events: int,
    rate: float,
    command: str,
    profile: Path | None,
    per_process: int = 500,
) -> dict[str, Any]:
    target = _start(case.server)
    sampled = None
    if profile is not None and case.server == "mark1" and shutil.which("py-spy") is not None:
        out = profile / f"{case.name.replace(' ', '-')}.txt"
        sampled = partial(_sampled, target, out)
    try:
        scenario = Scenario(
            name=f"{case.name} ({case.server})",
            subscribe=case.subscribe,
            prepare=_prepare(case.server),
            in_flight=8,
            tokens=case.server == "mark1",
        )
        return await bench(
            target=target,
            n=n,
            events=events,
            rate=rate,
            per_process=per_process,
            concurrency=100,
            deflate=False,
            command=command,
            scenario=scenario,
            measured_by=sampled,
        )
    finally:
        target.stop()


@contextlib.contextmanager
def _sampled(target: Target, out: Path) -> Iterator[None]:
    """py-spy on the server for the measured window only (not the connects)."""
    argv = ["py-spy", "record", "--rate", "200", "--pid", str(target.pid)]
    spy = subprocess.Popen(
        [*argv, "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def _figures(result: dict[str, Any]) -> dict[str, Any]:
    r, cfg = result["results"], result["config"]
    cpu = r.get("server_cpu_seconds_per_message")
    return {
        "subscribers": cfg["subscribers"],
        "events": cfg["events"],
        "rate": cfg["rate"],
        "delivered": r["delivered"],
        "expected": r["expected"],
        "missing": r["missing"],
        "duplicates": r["duplicates"],
        "out_of_order": r["out_of_order"],
        "msgs_per_s": r["delivered_per_second"],
        "publish_rate": r["publish_rate"],
        "cpu_us_per_msg": cpu * 1e6 if cpu else None,
        "p50_ms": r["latency_seconds"]["p50"] * 1000,
        "p99_ms": r["latency_seconds"]["p99"] * 1000,
        "scheduled_p99_ms": (r.get("scheduled_latency_seconds") or {}).get("p99", 0) * 1000 or None,
        "kib_per_connection": r["server_memory"].get("per_connection_kib"),
    }


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def summary(results: dict[str, dict[str, dict[str, Any]]]) -> list[tuple[str, str, str]]:
    """(measure, figures, ratio or goal) rows, the goals of issue 8 beside them."""
    rows: list[tuple[str, str, str]] = []

    def get(case: str, server: str) -> dict[str, Any] | None:
        return results.get(case, {}).get(server)

    def rate(f: dict[str, Any] | None) -> str:
        if f is None:
            return "not run"
        cpu = f"{f['cpu_us_per_msg']:.0f} µs CPU/msg" if f["cpu_us_per_msg"] else "CPU n/a"
        return f"{f['msgs_per_s']:,.0f} msgs/s, {cpu}"

    for case in ("burst identical", "burst distinct", "burst events", "burst events after"):
        m, node, floor = get(case, "mark1"), get(case, "node"), get(case, "floor")
        if m is None:
            continue
        text = f"Mark-1 {rate(m)}"
        if node:
            text += f"; Node {rate(node)}"
        if floor:
            text += f"; floor {rate(floor)}"
        ratios = []
        if node:
            ratios.append(f"{_ratio(m['msgs_per_s'], node['msgs_per_s'])} Node")
        if floor:
            ratios.append(f"{_ratio(m['msgs_per_s'], floor['msgs_per_s'])} floor")
        rows.append((case, text, ", ".join(ratios) or "—"))
    live, after = get("burst events", "mark1"), get("burst events after", "mark1")
    if live and after:
        rows.append(
            (
                "events after / live-only (burst)",
                "",
                _ratio(after["msgs_per_s"], live["msgs_per_s"]),
            )
        )
    for case in ("paced identical", "paced events", "paced events after", "paced 10k identical"):
        for server in ("mark1", "node"):
            f = get(case, server)
            if f is None:
                continue
            stamped = f["publish_rate"] / f["rate"] if f["rate"] else 0
            due = f.get("scheduled_p99_ms")
            rows.append(
                (
                    f"{case} ({server})",
                    f"{f['subscribers']:,} subs at {f['rate']:g} events/s: achieved "
                    f"{f['publish_rate']:.0f}/s ({stamped:.0%}), "
                    f"commit→arrival p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms"
                    + (f", scheduled→arrival p99 {due:.0f} ms" if due else ""),
                    f"{f['msgs_per_s']:,.0f} msgs/s"
                    + (
                        f", {f['kib_per_connection']:.1f} KiB/connection"
                        if case == "paced 10k identical" and f["kib_per_connection"]
                        else ""
                    ),
                )
            )
    live, after = get("paced events", "mark1"), get("paced events after", "mark1")
    if live and after:
        rows.append(
            (
                "events after / live-only (paced p99)",
                f"{after['p99_ms']:.0f} ms vs {live['p99_ms']:.0f} ms",
                _ratio(after["p99_ms"], live["p99_ms"]),
            )
        )
    for server in ("mark1", "node", "floor"):
        f = get("burst identical", server)
        if f and f["kib_per_connection"] is not None:
            rows.append(
                (f"memory per connection ({server})", f"{f['kib_per_connection']:.1f} KiB", "")
            )
    return rows


def markdown(machine: dict[str, Any], rows: list[tuple[str, str, str]], when: str) -> str:
    lines = [
        f"Measured {when} on {machine['nproc']} x {machine['cpu']}, Python {machine['python']}, "
        f"{machine['system']} (load average at start {machine['load_average_at_start']}).",
        "",
        "| measure | figures | ratio |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
    ]
    return "\n".join(lines) + "\n"


@app.command()
def main(
    subscribers: Annotated[int, typer.Option(help="Burst subscribers.")] = 1000,
    events: Annotated[int, typer.Option(help="Burst events.")] = 50,
    paced_subscribers: Annotated[int, typer.Option(help="Paced subscribers.")] = 200,
    paced_rate: Annotated[float, typer.Option(help="Paced events per second.")] = 200,
    paced_seconds: Annotated[float, typer.Option(help="Paced run length.")] = 5,
    ten_thousand: Annotated[
        bool,
        typer.Option(help="Also 10,000 subscribers at 5 events/s (a few minutes, 2 GB of RAM)."),
    ] = False,
    large_subscribers: Annotated[
        int, typer.Option(help="Subscribers of the --ten-thousand case.")
    ] = 10_000,
    large_rate: Annotated[float, typer.Option(help="Events per second of that case.")] = 5,
    large_seconds: Annotated[float, typer.Option(help="Length of that case.")] = 10,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only cases whose name contains this.")
    ] = None,
    output: Annotated[Path, typer.Option(help="Where compare.json and .md go.")] = RESULTS,
    profile: Annotated[
        Path | None, typer.Option(help="py-spy each Mark-1 case into this directory.")
    ] = None,
) -> None:
    """Fan-out figures for Mark-1, the Node reference and the raw floor, in one run."""
    command = shlex.join(["uv", "run", "python", "-m", "bench.compare", *sys.argv[1:]])
    _raise_fd_limit(max(subscribers, large_subscribers if ten_thousand else 0) * 2 + 256)
    machine = report.machine()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        label = f"{case.name} ({case.server})"
        if only and not any(o in label for o in only):
            continue
        if case.large and not ten_thousand:
            continue
        print(f"\n== {label}", flush=True)
        n = paced_subscribers if case.paced else subscribers
        count = int(paced_rate * paced_seconds) if case.paced else events
        rate = paced_rate if case.paced else 0
        per_process = 500
        if case.large:
            n, rate, count = large_subscribers, large_rate, int(large_rate * large_seconds)
            per_process = 1000  # ten client processes, not twenty, on a small machine
        try:
            result = asyncio.run(
                _run_case(
                    case,
                    n=n,
                    events=count,
                    rate=rate,
                    command=command,
                    profile=profile,
                    per_process=per_process,
                )
            )
        except Exception as exc:  # one failing peer must not lose the other figures
            print(f"   failed: {exc}", flush=True)
            continue
        figures = _figures(result)
        results.setdefault(case.name, {})[case.server] = figures
        print(
            "   "
            + json.dumps(
                {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}
            ),
            flush=True,
        )
    rows = summary(results)
    when = report.now()
    output.mkdir(parents=True, exist_ok=True)
    (output / "compare.json").write_text(
        json.dumps({"measured_at": when, "machine": machine, "results": results}, indent=2) + "\n"
    )
    text = markdown(machine, rows, when[:10])
    (output / "compare.md").write_text(text + f"\nCommand: `{command}`\n")
    print("\n" + text)
    bad = [
        f"{case}/{server}"
        for case, by_server in results.items()
        for server, f in by_server.items()
        if f["missing"] or f["duplicates"] or f["out_of_order"]
    ]
    if bad:
        print(f"missing, duplicated or out-of-order messages in: {', '.join(bad)}")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
