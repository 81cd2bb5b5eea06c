"""Write-path benchmark: mutations per second from concurrent agents, beside their floors.

    uv run python -m bench.writes [--seconds 8] [--agents 8] [--databases sqlite,postgres]

In one run, on this machine: a bare ASGI app answering fixed JSON and a bare
strawberry server answering ``{ __typename }`` (``bench/floors.py``), then for
each database a fresh ``mark1 serve`` with ``--agents`` agents (one keep-alive
connection each, requests back to back, no subscribers) sending
``{ __typename }`` with an agent token (the product's floor: everything but the
database), ``reportProgress``, ``heartbeat``, ``createTask`` and ``claimTask`` (each
claim followed by the ``completeTask`` that frees the agent again), and the
raw SQL of one ``reportProgress`` issued straight to the same database
(``bench/rawsql.py``), and ``reportProgress`` again with ``--subscribers``
identical ``taskUpdates`` subscriptions attached (from client processes of
their own): every mutation then fans out to all of them, so the rate should be
bounded by the fan-out alone. Every product figure is given as a ratio to the
strawberry floor measured right before and right after it (``Floor``: the
machine's speed drifts over minutes) and to the ASGI floor, with the server's
CPU time per mutation (from /proc/<pid>/stat before and after the window) and
the load generator's own CPU share (it must stay well under one core for the figures to be the
server's). Results go to stdout and ``bench/results/writes.json`` / ``.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import httpx
import orjson
import typer
import uvloop

from api.auth.tokens import mint_token
from api.domain import Role
from bench import load, rawsql, report, subscribers
from bench.server import Target, spawn

RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN_DSN = os.environ.get("MARK1_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TENANT = "bench"

TYPENAME = b'{"query":"{ __typename }"}'
TOUCH = b'{"query":"mutation($p: Float!) { touch(progress: $p) }","variables":{"p":0.5}}'
REPORT = (
    "mutation($t: ID!, $p: Float!) { reportProgress(taskId: $t, progress: $p) { id progress } }"
)
HEARTBEAT = "mutation($a: ID!) { heartbeat(agentId: $a) { id status } }"
CREATE = "mutation($title: String!) { createTask(input: {title: $title}) { id status } }"
CLAIM = "mutation($a: ID!) { claimTask(agentId: $a) { id status } }"
COMPLETE = "mutation($t: ID!) { completeTask(taskId: $t) { id status } }"
CURRENT = "query($a: ID!) { agent(id: $a) { currentTask { id } } }"
WATCH = orjson.dumps(
    {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "subscription { taskUpdates { id progress updatedAt } }"},
    }
).decode()
REGISTER = (
    "mutation($n: String!) { registerAgent(input: {name: $n, capabilities: []}) "
    "{ agent { id } token } }"
)

app = typer.Typer(add_completion=False)


# -- servers ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"floor server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"floor server on port {port} not listening after {timeout:.0f}s")


@contextmanager
def floor(kind: str) -> Iterator[Target]:
    """``bench.floors`` in a process of its own (its pid is the server, for CPU time)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.floors", kind, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = Target(
        url=f"http://127.0.0.1:{port}/graphql",
        secret="",
        pid=process.pid,
        description=f"bench.floors {kind}",
        _process=process,
    )
    try:
        _wait_port(port, process)
        yield target
    finally:
        target.stop()


@contextmanager
def database(kind: str) -> Iterator[str | None]:
    """None for the default SQLite file in the server's data dir; a fresh PostgreSQL
    database (dropped afterwards) for ``postgres``."""
    if kind == "sqlite":
        yield None
        return
    name = f"mark1_bench_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# -- requests --------------------------------------------------------------


def _request(target: Target, body: bytes, token: str | None = None) -> bytes:
    port = target.url.split(":")[2].split("/")[0]
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return load.post("/graphql", f"127.0.0.1:{port}", body, headers=headers)


def _body(query: str, variables: dict[str, Any]) -> bytes:
    return orjson.dumps({"query": query, "variables": variables})


def _graphql_ok(status: int, body: bytes) -> bool:
    return status == 200 and b'"errors"' not in body


def _fixed(data: bytes) -> load.RequestFor:
    return lambda _i, _previous: data


def _cycle(requests: list[bytes]) -> load.RequestFor:
    return lambda i, _previous: requests[i % len(requests)]


class Fleet:
    """Operators and agents in the benchmark tenant of one server, set up over HTTP."""

    def __init__(self, target: Target, size: int) -> None:
        self.target = target
        self.client = httpx.Client(timeout=60)
        self.operators = [self._token(f"bench-operator-{i}", Role.OPERATOR) for i in range(size)]
        self.agent_ids: list[str] = []
        self.agent_tokens: list[str] = []
        for i in range(size):
            data = self.call(self.operators[0], REGISTER, {"n": f"bench-agent-{i}"})
            self.agent_ids.append(data["registerAgent"]["agent"]["id"])
            self.agent_tokens.append(data["registerAgent"]["token"])
        self.held: list[str | None] = [None] * size

    def _token(self, sub: str, role: Role) -> str:
        t = self.target
        return mint_token(
            t.secret,
            sub=sub,
            roles=[role],
            tenant=TENANT,
            ttl=timedelta(days=1),  # outlives any benchmark or soak
            issuer=t.issuer,
            audience=t.audience,
        )

    def call(self, token: str, query: str, variables: dict[str, Any]) -> Any:
        reply = self.client.post(
            self.target.url,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        body = reply.json()
        if reply.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"{query[:40]}…: {reply.status_code} {body}")
        return body["data"]

    def hold_tasks(self) -> None:
        """Every agent holds one RUNNING task (what reportProgress needs): the one a claim
        loop left it holding, or a new one."""
        for i, (agent, token) in enumerate(zip(self.agent_ids, self.agent_tokens, strict=True)):
            if self.held[i] is None:
                current = self.call(self.operators[0], CURRENT, {"a": agent})["agent"]
                if current["currentTask"] is not None:
                    self.held[i] = current["currentTask"]["id"]
                    continue
                self.call(self.operators[0], CREATE, {"title": f"held by agent {i}"})
                claimed = self.call(token, CLAIM, {"a": agent})["claimTask"]
                self.held[i] = claimed["id"]

    def release_tasks(self) -> None:
        """No agent holds a task (a claim loop may have stopped between claim and complete)."""
        for i, (agent, token) in enumerate(zip(self.agent_ids, self.agent_tokens, strict=True)):
            data = self.call(self.operators[0], CURRENT, {"a": agent})
            if (task := data["agent"]["currentTask"]) is not None:
                self.call(token, COMPLETE, {"t": task["id"]})
            self.held[i] = None

    # One request builder per agent connection and scenario.

    def report_progress(self) -> list[load.RequestFor]:
        self.hold_tasks()
        return [
            _cycle(
                [
                    _request(self.target, _body(REPORT, {"t": task, "p": p / 100}), token)
                    for p in range(100)
                ]
            )
            for task, token in zip(self.held, self.agent_tokens, strict=True)
        ]

    def progress_and_create(self, targets: list[Target]) -> list[load.RequestFor]:
        """``reportProgress`` on its held task and ``createTask`` in turn, one connection
        per agent, agent i sending to ``targets[i % len(targets)]`` (the soak's writers)."""
        self.hold_tasks()
        out = []
        for i, (task, token) in enumerate(zip(self.held, self.agent_tokens, strict=True)):
            target = targets[i % len(targets)]
            operator = self.operators[i % len(self.operators)]
            requests = []
            for p in range(100):
                requests.append(_request(target, _body(REPORT, {"t": task, "p": p / 100}), token))
                title = {"title": f"soak task {i}.{p}"}
                requests.append(_request(target, _body(CREATE, title), operator))
            out.append(_cycle(requests))
        return out

    def typename(self) -> list[load.RequestFor]:
        """``{ __typename }`` with each agent's token: the whole stack but the database."""
        return [_fixed(_request(self.target, TYPENAME, token)) for token in self.agent_tokens]

    def heartbeat(self) -> list[load.RequestFor]:
        return [
            _fixed(_request(self.target, _body(HEARTBEAT, {"a": agent}), token))
            for agent, token in zip(self.agent_ids, self.agent_tokens, strict=True)
        ]

    def create_task(self) -> list[load.RequestFor]:
        self.release_tasks()
        return [
            _fixed(_request(self.target, _body(CREATE, {"title": f"bench task {i}"}), token))
            for i, token in enumerate(self.operators)
        ]

    def claim_task(self) -> list[load.RequestFor]:
        """claimTask, then completeTask of what it claimed, so the agent may claim again."""
        self.release_tasks()
        out = []
        for agent, token in zip(self.agent_ids, self.agent_tokens, strict=True):
            claim = _request(self.target, _body(CLAIM, {"a": agent}), token)

            def next_request(
                _i: int, previous: bytes | None, claim: bytes = claim, token: str = token
            ) -> bytes:
                if previous is not None and b'"claimTask"' in previous:
                    task = orjson.loads(previous)["data"]["claimTask"]
                    if task is not None:
                        return _request(self.target, _body(COMPLETE, {"t": task["id"]}), token)
                return claim

            out.append(next_request)
        return out


SCENARIOS: dict[str, Callable[[Fleet], list[load.RequestFor]]] = {
    # The product's floor: auth, middlewares, transport and execution, no database.
    "Mark-1 `{ __typename }`, agent token": Fleet.typename,
    "reportProgress": Fleet.report_progress,
    "heartbeat": Fleet.heartbeat,
    "createTask": Fleet.create_task,
    "claimTask + completeTask": Fleet.claim_task,
}


# -- measuring ---------------------------------------------------------------


def measure(
    target: Target,
    requests: list[load.RequestFor],
    *,
    seconds: float,
    ok: Callable[[int, bytes], bool] | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    port = int(target.url.split(":")[2].split("/")[0])
    spy = None
    if profile is not None and target.pid is not None:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if py_spy is None:
            raise typer.BadParameter("--profile needs py-spy (pip install py-spy)")
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(target.pid),
                "--duration",
                str(int(seconds) + 1),
                "--rate",
                "250",
                "--format",
                {".json": "speedscope", ".txt": "raw"}.get(profile.suffix, "flamegraph"),
                "--output",
                str(profile),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    result = uvloop.run(
        load.run("127.0.0.1", port, requests, seconds=seconds, ok=ok, server_cpu=target.cpu_seconds)
    )
    if spy is not None:
        spy.wait(60)
    lat = report.summary(result.latencies)
    return {
        "per_second": result.per_second,
        "requests": result.requests,
        "failures": result.failures,
        "first_failure": result.first_failure,
        "server_cpu_us": None
        if result.server_cpu_per_request is None
        else result.server_cpu_per_request * 1e6,
        "client_cpu_share": result.client_cpu_share,
        "latency_ms": {k: v * 1000 for k, v in lat.items()},
    }


class Floor:
    """The bare strawberry server answering ``{ __typename }``, kept running for the whole
    run and measured in a short window right before and right after each product figure.

    On a shared VM the same floor measured minutes apart once read 1,144/s and then
    573/s, so a ratio to one floor measured at the start moved with the machine, not
    the code. Each figure's ratio is to the mean of the two windows around it: drift
    that is linear over those three windows cancels out, and a figure measured while
    the machine changed speed shows it as a gap between its ``before`` and ``after``.
    Figures measured back to back share the window between them. The floor server idles
    while the product is measured, and the product server while the floor is.
    """

    def __init__(self, target: Target, *, agents: int, seconds: float) -> None:
        self.target = target
        self.requests = [_fixed(_request(target, TYPENAME))] * agents
        self.seconds = seconds
        self.windows: list[dict[str, Any]] = []

    def window(self) -> dict[str, Any]:
        """One floor window of ``seconds``, kept for the run's spread."""
        figure = measure(self.target, self.requests, seconds=self.seconds, ok=_graphql_ok)
        self.windows.append(figure)
        return figure

    def around(
        self, product: Callable[[], dict[str, Any]], *, before: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``product()``'s figure between two floor windows (``before``: one just measured,
        to share), with the floor around it and its ratio to that floor."""
        before = before or self.window()
        figure = product()
        after = self.window()
        rate = (before["per_second"] + after["per_second"]) / 2
        figure["strawberry_floor"] = {
            "before": before["per_second"],
            "after": after["per_second"],
            "per_second": rate,
        }
        figure["x_strawberry"] = figure["per_second"] / rate if rate else None
        return figure

    def spread(self) -> dict[str, Any]:
        """Every window's rate in the order measured, with their min and max."""
        rates = [w["per_second"] for w in self.windows]
        return {
            "seconds": self.seconds,
            "windows": rates,
            "min": min(rates),
            "max": max(rates),
            "failures": sum(w["failures"] for w in self.windows),
        }


def _line(name: str, m: dict[str, Any], asgi: float | None = None) -> str:
    cpu = f"{m['server_cpu_us']:7,.0f} µs" if m.get("server_cpu_us") is not None else "    n/a"
    text = (
        f"  {name:<34} {m['per_second']:8,.0f}/s  server CPU {cpu}/req  "
        f"p50 {m['latency_ms']['p50']:6.1f} ms  client CPU {m['client_cpu_share']:4.0%}"
    )
    if (floor := m.get("strawberry_floor")) is not None:
        text += (
            f"  = {m['x_strawberry']:.2f}x strawberry {floor['per_second']:,.0f}/s "
            f"({floor['before']:,.0f} before, {floor['after']:,.0f} after)"
        )
        if asgi:
            text += f", {m['per_second'] / asgi:.2f}x ASGI"
    if m.get("failures"):
        text += f"  FAILURES {m['failures']}: {m['first_failure']}"
    return text


def _spread_line(spread: dict[str, Any]) -> str:
    low, high = spread["min"], spread["max"]
    text = (
        f"  bare strawberry {{ __typename }} over the run: {len(spread['windows'])} windows of "
        f"{spread['seconds']:g} s, {low:,.0f} to {high:,.0f}/s (max/min {high / low:.2f})"
    )
    if spread["failures"]:
        text += f"  FAILURES {spread['failures']}"
    return text


@app.command()
def main(
    seconds: Annotated[float, typer.Option(help="measured window per figure")] = 8.0,
    agents: Annotated[int, typer.Option(help="concurrent agents (connections)")] = 8,
    databases: Annotated[str, typer.Option(help="comma-separated: sqlite, postgres")] = (
        "sqlite,postgres"
    ),
    only: Annotated[str, typer.Option(help="comma-separated scenario names to run")] = "",
    profile: Annotated[
        Path | None, typer.Option(help="directory for py-spy profiles (needs py-spy)")
    ] = None,
    subscribers_: Annotated[
        int,
        typer.Option(
            "--subscribers", help="reportProgress again with this many subscribers (0: skip)"
        ),
    ] = 1000,
    profile_format: Annotated[
        str, typer.Option(help="svg (flame graph), json (speedscope) or txt (collapsed stacks)")
    ] = "svg",
    results: Annotated[
        Path, typer.Option(help="directory for writes.json and writes.md")
    ] = RESULTS,
) -> None:
    """Measure the write path and its floors in one run; print and save the figures."""
    started = report.now()
    machine = report.machine()
    print(
        f"write path, {agents} agents back to back, {seconds:g} s per figure; "
        f"{machine['nproc']} x {machine['cpu']}, load average {machine['load_average_at_start']}",
        flush=True,
    )
    wanted = {s.strip() for s in only.split(",") if s.strip()}
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)

    floors: dict[str, dict[str, Any]] = {}
    with floor("asgi") as target:
        floors["asgi"] = measure(
            target, [_fixed(_request(target, TYPENAME))] * agents, seconds=seconds
        )
    print(_line("bare ASGI app, fixed JSON", floors["asgi"]), flush=True)
    asgi = floors["asgi"]["per_second"]
    products: dict[str, dict[str, Any]] = {}
    # The strawberry floor runs until the end: every product figure is measured between
    # two of its windows (see Floor).
    with floor("strawberry") as straw:
        bare = Floor(straw, agents=agents, seconds=seconds)
        floors["strawberry"] = bare.window()
        print(_line("bare strawberry, { __typename }", floors["strawberry"]), flush=True)
        floors["strawberry_mutation"] = bare.around(
            partial(
                measure, straw, [_fixed(_request(straw, TOUCH))] * agents, seconds=seconds,
                ok=_graphql_ok,
            ),
            before=floors["strawberry"],
        )  # fmt: skip
        print(
            _line("bare strawberry, one-line mutation", floors["strawberry_mutation"], asgi),
            flush=True,
        )
        for kind in [d.strip() for d in databases.split(",") if d.strip()]:
            products[kind] = _database_figures(
                kind, bare, agents=agents, seconds=seconds, wanted=wanted, asgi=asgi,
                subscribers_=subscribers_, profile=profile, profile_format=profile_format,
            )  # fmt: skip
    spread = bare.spread()
    print(_spread_line(spread), flush=True)

    result = {
        "measured_at": started,
        "machine": machine,
        "config": {"seconds": seconds, "agents": agents, "databases": databases},
        "command": shlex.join(["python", "-m", "bench.writes", *sys.argv[1:]]),
        "floors": floors,
        "strawberry_floor": spread,
        "products": products,
    }
    results.mkdir(parents=True, exist_ok=True)
    (results / "writes.json").write_text(json.dumps(result, indent=2) + "\n")
    (results / "writes.md").write_text(markdown(result))
    print(f"\nwrote {results / 'writes.json'} and {results / 'writes.md'}")
    failed = [n for f in products.values() for n, m in f.items() if m.get("failures")]
    if failed or spread["failures"]:
        raise typer.Exit(1)


def _database_figures(
    kind: str,
    bare: Floor,
    *,
    agents: int,
    seconds: float,
    wanted: set[str],
    asgi: float,
    subscribers_: int,
    profile: Path | None,
    profile_format: str,
) -> dict[str, Any]:
    """Every product figure on a fresh server over ``kind``, each between floor windows."""
    with database(kind) as url, _server(url) as target:
        fleet = Fleet(target, agents)
        figures: dict[str, Any] = {}
        # Starting the server took seconds: the first figure gets a floor window of its
        # own; after it, each figure shares the window that ended just before it.
        before: dict[str, Any] | None = None
        for name, build in SCENARIOS.items():
            if wanted and name.split(" ")[0] not in wanted:
                continue
            requests = build(fleet)
            spy = (
                None
                if profile is None
                else profile / f"{kind}-{name.split(' ')[0]}.{profile_format}"
            )
            figures[name] = bare.around(
                partial(measure, target, requests, seconds=seconds, ok=_graphql_ok, profile=spy),
                before=before,
            )
            before = bare.windows[-1]
            print(_line(f"{kind}: {name}", figures[name], asgi), flush=True)
        if subscribers_ and "reportProgress" in figures:
            name = f"reportProgress, {subscribers_:,} subscribers attached"
            figures[name] = with_subscribers(
                target,
                fleet,
                subscribers_,
                seconds=seconds,
                without=figures["reportProgress"],
                floor=bare,
            )
            print(_line(f"{kind}: {name}", figures[name], asgi), flush=True)
            print(_fan_out_line(figures[name]), flush=True)
        fleet.release_tasks()
        fleet.hold_tasks()
        held = [(t, a) for t, a in zip(fleet.held, fleet.agent_ids, strict=True) if t]
        raw = bare.around(
            lambda: asyncio.run(
                rawsql.measure(
                    url or f"sqlite+aiosqlite:///{target._tmp / 'mark1.db'}",
                    tenant=TENANT,
                    held=held,
                    seconds=seconds,
                )
            )
        )
        figures["raw SQL of one reportProgress"] = raw
        print(_line(f"{kind}: raw SQL of one reportProgress", raw, asgi), flush=True)
        return figures


@contextmanager
def attached(target: Target, count: int, per_process: int = 500) -> Iterator[list[int]]:
    """``count`` identical ``taskUpdates`` subscriptions in the benchmark tenant, held
    by client processes (their pids are yielded, for their CPU time)."""
    tokens = [
        mint_token(
            target.secret,
            sub=f"bench-watcher-{i}",  # the server caps sockets per subject
            roles=[Role.VIEWER],
            tenant=TENANT,
            issuer=target.issuer,
            audience=target.audience,
        )
        for i in range(count)
    ]
    ctx = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for i in range(0, count, per_process):
        chunk = tokens[i : i + per_process]
        # events=0: each process reads (and drops) whatever arrives until told to stop.
        plan = subscribers.Plan(target.ws_url, chunk, 0, 50, False, [WATCH] * len(chunk))
        parent, child = ctx.Pipe()
        process = ctx.Process(target=subscribers.run, args=(plan, child), daemon=True)
        process.start()
        child.close()
        pipes.append(parent)
        processes.append(process)
    try:
        for pipe in pipes:
            kind, connected = pipe.recv()
            assert kind == "connected", kind
            if connected.failures:
                raise RuntimeError(f"subscriber sockets failed: {connected.failures[:3]}")
        deadline = time.monotonic() + 60
        while target.metrics().get("mark1_subscriptions_active", 0) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} subscriptions not live after 60 s")
            time.sleep(0.2)
        yield [p.pid for p in processes if p.pid is not None]
    finally:
        for pipe in pipes:
            with contextlib.suppress(OSError):
                pipe.send("stop")
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.terminate()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_subscribers(
    target: Target,
    fleet: Fleet,
    count: int,
    *,
    seconds: float,
    without: dict[str, Any],
    floor: Floor,
) -> dict[str, Any]:
    """``reportProgress`` with ``count`` subscribers attached, and what the fan-out took;
    the floor windows around it are measured with the subscribers attached (and idle)."""
    with attached(target, count) as pids:
        requests = fleet.report_progress()

        def window() -> dict[str, Any]:
            before = target.metrics().get("mark1_events_delivered_total", 0)
            clients = sum(_cpu_seconds(p) for p in pids)
            figure = measure(target, requests, seconds=seconds, ok=_graphql_ok)
            clients = sum(_cpu_seconds(p) for p in pids) - clients
            delivered = target.metrics().get("mark1_events_delivered_total", 0) - before
            return _fan_out(figure, count, delivered, clients, seconds=seconds, without=without)

        return floor.around(window)


def _fan_out(
    figure: dict[str, Any],
    count: int,
    delivered: float,
    clients: float,
    *,
    seconds: float,
    without: dict[str, Any],
) -> dict[str, Any]:
    """``figure`` with what the fan-out to ``count`` subscribers took beside it."""
    window = figure["requests"] / figure["per_second"] if figure["per_second"] else seconds
    figure["subscribers"] = count
    # The counter also takes in what mutations still in flight at the end fanned out:
    # it can only confirm that every mutation reached every subscriber.
    figure["reached_every_subscriber"] = delivered >= figure["requests"] * count
    figure["delivered_per_second"] = figure["per_second"] * count
    figure["subscriber_cpu_share"] = clients / window
    if figure["server_cpu_us"]:
        figure["server_cpu_share"] = figure["server_cpu_us"] * figure["per_second"] / 1e6
    if figure["server_cpu_us"] and without.get("server_cpu_us"):
        # CPU the mutations took beyond their cost without subscribers: the fan-out's.
        fan_out = figure["server_cpu_us"] - without["server_cpu_us"]
        figure["fan_out_share"] = fan_out / figure["server_cpu_us"]
        figure["fan_out_us_per_message"] = fan_out / count
    return figure


@contextmanager
def _server(database_url: str | None) -> Iterator[Target]:
    target = spawn(database_url=database_url, broadcast_url=None)
    try:
        yield target
    finally:
        target.stop()


def _fan_out_line(m: dict[str, Any]) -> str:
    missed = "" if m["reached_every_subscriber"] else " (SOME SUBSCRIBERS MISSED EVENTS)"
    text = (
        f"  {'':<34} {m['delivered_per_second']:8,.0f} msgs/s delivered{missed}; server CPU "
        f"{m.get('server_cpu_share', 0):.0%} of a core, subscriber processes' "
        f"{m['subscriber_cpu_share']:.0%}"
    )
    if "fan_out_share" in m:
        text += (
            f"; fan-out {m['fan_out_share']:.0%} of the server CPU per mutation, "
            f"{m['fan_out_us_per_message']:.0f} µs per message"
        )
    return text


def markdown(result: dict[str, Any]) -> str:
    m, floors = result["machine"], result["floors"]
    asgi, straw = floors["asgi"]["per_second"], floors["strawberry"]["per_second"]

    def cpu(fig: dict[str, Any]) -> str:
        return "n/a" if fig.get("server_cpu_us") is None else f"{fig['server_cpu_us']:,.0f} µs"

    def row(label: str, fig: dict[str, Any]) -> str:
        # A figure measured between floor windows is compared with them; the others
        # (the ASGI floor, the first strawberry window) with that first window.
        around = fig.get("strawberry_floor")
        ratio = fig["x_strawberry"] if around else fig["per_second"] / straw
        floor = (
            f"{around['per_second']:,.0f} ({around['before']:,.0f} → {around['after']:,.0f})"
            if around
            else ""
        )
        return (
            f"| {label} | {fig['per_second']:,.0f} | {ratio:.2f} | "
            f"{fig['per_second'] / asgi:.2f} | {cpu(fig)} | {fig['client_cpu_share']:.0%} "
            f"| {floor} |"
        )

    lines = [
        f"Measured {result['measured_at'][:10]} on {m['nproc']} x {m['cpu']}, Python "
        f"{m['python']}, {m['system']}; load average at start {m['load_average_at_start']}; "
        f"{result['config']['agents']} agents back to back, "
        f"{result['config']['seconds']:g} s per figure.",
        "",
        "| figure | per second | x strawberry `{ __typename }` | x bare ASGI "
        "| server CPU per request | client CPU | strawberry floor around it (before → after) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (
        ("asgi", "bare ASGI app, fixed JSON"),
        ("strawberry", "bare strawberry, `{ __typename }`"),
        ("strawberry_mutation", "bare strawberry, one-line mutation"),
    ):
        lines.append(row(label, floors[name]))
    for kind, figures in result["products"].items():
        for name, fig in figures.items():
            lines.append(row(f"{kind}: {name}", fig))
            if "fan_out_share" in fig:
                lines.append(
                    f"| {kind}: … of which the fan-out ({fig['delivered_per_second']:,.0f} "
                    f"msgs/s) | | | | {fig['fan_out_share']:.0%}, "
                    f"{fig['fan_out_us_per_message']:.0f} µs per message | "
                    f"{fig['subscriber_cpu_share']:.0%} (subscribers) | |"
                )
    if spread := result.get("strawberry_floor"):
        lines += [
            "",
            f"Each x strawberry is against the mean of the bare strawberry `{{ __typename }}` "
            f"windows measured right before and right after the figure. Over the run, "
            f"{len(spread['windows'])} such windows of {spread['seconds']:g} s read "
            f"{spread['min']:,.0f} to {spread['max']:,.0f}/s (lowest to highest).",
        ]
    lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    app()
