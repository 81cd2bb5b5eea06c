"""A drain, inside one server: out of rotation at once, and a socket's mutation in flight
finishes before the socket's 1012. (tests/realtime/test_drain.py stops real processes.)"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.protocol import State

from tests.ops.proxy import TcpProxy
from tests.realtime.wire import Socket
from tests.support.graphql import data, gql
from tests.support.server import live_server, make_settings
from tests.support.waiting import until

CREATE = "mutation($t: String!) { createTask(input: {title: $t}) { title } }"
DRAIN = 10.0
# A lone socket's turn to close comes at once; its mutation in flight may then take up
# to GRACE * DRAIN (2 s, api/drain.py). The database answers well inside that.
HELD_FOR = 0.5

pytestmark = pytest.mark.postgres


async def test_a_drain_is_out_of_rotation_at_once_and_closes_a_socket_after_its_mutation(
    postgres_via_proxy: tuple[str, TcpProxy], tmp_path: Path, tenant: str
) -> None:
    url, proxy = postgres_via_proxy
    # No head checks: the only database connection in use is then the mutation's.
    settings = make_settings(url, tmp_path, drain_seconds=DRAIN, gap_check_interval=3600)
    with live_server(settings) as live:
        operator = live.token("OPERATOR", tenant=tenant)
        data(await gql(live.url, CREATE, {"t": "warm"}, token=operator))  # a pooled connection
        socket = await Socket.open(live.ws_url, operator)
        pool = live.runtime.db.engine.pool

        proxy.stall()  # the mutation below waits on the database...
        try:
            await socket.subscribe("m", CREATE, {"t": "in flight"})
            await until(lambda: pool.checkedout() == 1, what="the mutation to be in flight")  # type: ignore[attr-defined]
            live.runtime.drain.request()  # as SIGTERM does
            async with httpx.AsyncClient(timeout=10) as client:
                ready = await client.get(f"{live.base}/readyz")
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(live.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
            # ...past its socket's turn to close (at once): the socket stays open for it.
            await socket.silent("m", HELD_FOR)
            assert socket.ws.state is State.OPEN, "closed with its mutation in flight"
        finally:
            proxy.resume()
        result = await socket.next("m")
        await socket.completed("m")
        close = await socket.closed()
        await socket.close()

    assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
    assert refused.value.response.status_code == 503
    assert result == {"createTask": {"title": "in flight"}}
    assert close == (1012, "Service restart")
