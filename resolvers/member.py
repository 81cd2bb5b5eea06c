"""One operation in a multiplexed group: its framing, its bounded outbox, its writes.

A group serialises each result once; a member only splices its operation id
into the envelope and writes. While nothing of the member's is in flight the
write happens at once, inside the group's fan-out loop: the socket's send
coroutine is driven by hand and, when the transport is writable, finishes
without suspending (Python 3.12's eager tasks do the same). Only when a send
has to wait for the transport does the member get a writer task, and results
queue behind it, up to ``capacity``; beyond that the member ends alone with
SLOW_CONSUMER (DESIGN: one slow subscriber never stalls the others).

A member that passed ``after`` switches from history to live without a gap
or a duplicate (resolvers/multiplex.py says why each step holds):

1. it joins the group and, once the group is live, takes ``through``: the
   bus's head for the tenant, an id every event up to which is committed;
2. it holds the group's results above ``through`` (the group's stream has
   every event above it, in order) and drops those at or below it;
3. it replays the outbox from its cursor up to and including ``through``;
4. it sends what it held, then live results as they come.

Every result that carries an event is accepted only if its id is above the
last one accepted, so no id reaches the socket twice or out of order,
whatever the group and the replay race to deliver.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLFormattedError

from api.domain import EventRecord
from api.errors import SlowConsumer
from api.metrics import Metrics

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
# Writes one result (its UTF-8 payload) as the operation's message straight to the
# socket; False when it cannot now (resolvers/transport/frames.py).
WriteFrame = Callable[[bytes], bool]
# Writes a text message of three UTF-8 parts straight to a socket (frames.py).
FrameWriter = Callable[[bytes, bytes, bytes], bool]
Outgoing = tuple[str, EventRecord | None]


class Payload:
    """A result serialised once for the whole group: as UTF-8 for frames written
    straight to a socket, and as text for the ASGI sends, decoded only if one needs it
    (with a document per socket, most results never do)."""

    __slots__ = ("_text", "utf8")

    def __init__(self, utf8: bytes) -> None:
        self.utf8 = utf8
        self._text: str | None = None

    @property
    def text(self) -> str:
        text = self._text
        if text is None:
            text = self._text = self.utf8.decode()
        return text


class Framing(ABC):
    """How one wire format wraps a result, a failure and the end of an operation.

    Each message is one whole write (a frame, an SSE event, a multipart part), so
    writers never interleave inside one. Implementations: ``SocketFraming`` for both
    WebSocket protocols, and one per HTTP stream format in resolvers/transport/.
    """

    __slots__ = ()

    complete: str
    """The operation ended normally ("" when the end of the response says it)."""

    @abstractmethod
    def data(self, payload: str) -> str:
        """One result; ``payload`` is the serialised execution result."""

    @abstractmethod
    def failed(self, errors: str) -> list[str]:
        """The operation ends because of ``errors`` (a JSON list) raised while it ran."""

    @abstractmethod
    def rejected(self, errors: list[GraphQLFormattedError]) -> list[str]:
        """The document could not run (validation, permissions at subscribe)."""

    def internal(self) -> list[str]:
        """The operation failed inside the server (resolvers/transport/failures.py)."""
        return self.failed(orjson.dumps([internal_error()]).decode())


def internal_error() -> GraphQLFormattedError:
    """The masked error an operation that failed inside the server ends with."""
    return GraphQLError("Internal server error", extensions={"code": "INTERNAL"}).formatted


class SocketFraming(Framing):
    """graphql-transport-ws or, with ``legacy``, subscriptions-transport-ws messages."""

    # One per operation, for its life: only the ``data`` prefix is kept; the rarer
    # messages are built when sent.
    __slots__ = ("_data", "_quoted", "legacy")

    def __init__(self, op_id: str, *, legacy: bool) -> None:
        self._quoted = quoted = orjson.dumps(op_id).decode()
        self.legacy = legacy
        if legacy:  # subscriptions-transport-ws PROTOCOL.md
            self._data = '{"type":"data","id":' + quoted + ',"payload":'
        else:  # graphql-ws PROTOCOL.md (graphql-transport-ws)
            self._data = '{"id":' + quoted + ',"type":"next","payload":'

    @property
    def _error(self) -> str:
        if self.legacy:
            return '{"type":"error","id":' + self._quoted + ',"payload":'
        return '{"id":' + self._quoted + ',"type":"error","payload":'

    @property
    def complete(self) -> str:  # type: ignore[override]  # read-only: built when sent
        if self.legacy:
            return '{"type":"complete","id":' + self._quoted + "}"
        return '{"id":' + self._quoted + ',"type":"complete"}'

    def data(self, payload: str) -> str:
        return self._data + payload + "}"

    def writer(self, frames: FrameWriter | None) -> WriteFrame | None:
        """Results written straight to the socket through ``frames``, when it has one."""
        if frames is None:
            return None
        head = self._data.encode()  # a result is this, the group's payload, "}"
        return lambda payload: frames(head, payload, b"}")

    def failed(self, errors: str) -> list[str]:
        """graphql-transport-ws ends the operation with ``error``; the legacy protocol,
        as subscriptions-transport-ws's own server, with ``data`` carrying the errors
        and null data, then ``complete``."""
        if self.legacy:
            return [self._data + '{"data":null,"errors":' + errors + "}}", self.complete]
        return [self._error + errors + "}"]

    def internal(self) -> list[str]:
        """``error`` INTERNAL on both protocols (resolvers/transport/failures.py)."""
        return self.rejected([internal_error()])

    def rejected(self, errors: list[GraphQLFormattedError]) -> list[str]:
        """``error``; one error in legacy."""
        if self.legacy:
            return [self._error + orjson.dumps(errors[0]).decode() + "}"]
        return [self._error + orjson.dumps(errors).decode() + "}"]


class Member:
    """One operation's outbox and writes, fed by its group."""

    # A process may hold 10,000 members: no __dict__, and what only a slow or replaying
    # member needs is made when it does (an empty deque or Event costs ~0.8 KiB).
    __slots__ = (
        "_accepted",
        "_capacity",
        "_closing",
        "_direct",
        "_final",
        "_gone",
        "_held",
        "_metrics",
        "_pending",
        "_queue",
        "_replaying",
        "_send",
        "_slow",
        "_waiter",
        "_writer",
        "ended",
        "failure",
        "framing",
        "last_event_id",
    )

    def __init__(
        self,
        framing: Framing,
        send_text: SendText,
        capacity: int,
        metrics: Metrics,
        *,
        after: int | None = None,
        write_frame: WriteFrame | None = None,
    ) -> None:
        self.framing = framing
        self._send = send_text
        self._direct = write_frame
        self._capacity = capacity
        self._metrics = metrics
        self._queue: deque[Outgoing] | None = None  # results behind a write in flight
        self._writer: asyncio.Task[None] | None = None
        self._replaying = after is not None
        # What the group sent while the replay ran; only members that replay have one
        # (an empty deque costs half a kilobyte, and there may be 10,000 members).
        self._held: deque[tuple[Payload, EventRecord | None]] | None = (
            deque() if after is not None else None
        )
        self._final: list[str] | None = None
        self._slow = False
        self._gone = False
        self._closing = False
        self._pending: EventRecord | None = None  # the record of a write in flight
        self.ended = False  # nothing more will be written (``wait_ended``)
        self._waiter: asyncio.Future[None] | None = None
        self.failure: Exception | None = None
        # The last event id sent: a SLOW_CONSUMER error tells the client to resume there.
        self.last_event_id = after
        # The last event id accepted from the group (sent, queued or held), or that the
        # replay covers: the group's results at or below it are dropped.
        self._accepted = after

    # -- from the group --------------------------------------------------

    def offer(self, payload: Payload, record: EventRecord | None) -> bool:
        """One result of the group; on overflow the member ends with SLOW_CONSUMER.

        True when it was written at once: the group counts those deliveries itself.
        """
        if self._final is not None or self._slow or self._gone:
            return False
        if record is not None:
            if self._accepted is not None and record.id <= self._accepted:
                # The replay sends it, or already did: the group's stream lags the outbox.
                return False
            self._accepted = record.id
        if self._replaying:
            assert self._held is not None
            if len(self._held) >= self._capacity:
                self._overflow()
            else:
                self._held.append((payload, record))
            return False
        return self._deliver(payload, record)

    def finish(self, messages: list[str]) -> None:
        """End with ``messages`` (``complete``, or a failure) after what is queued."""
        if self._final is not None or self._slow or self._gone:
            return
        self._final = messages
        if self._replaying:
            return  # sent when the replay is over
        self._end_if_idle()

    # -- the replay of a member that passed ``after`` ----------------------

    def replay_through(self, through: int) -> None:
        """The replay covers ids up to ``through``: the group's results at or below it
        are dropped, from now on and from what is held."""
        self._accepted = through if self._accepted is None else max(self._accepted, through)
        if self._held:
            self._held = deque((p, r) for p, r in self._held if r is None or r.id > through)

    @property
    def replaying(self) -> bool:
        return self._replaying and not (self._slow or self._gone)

    async def replayed(self, payload: str, record: EventRecord | None) -> None:
        """Send one result of the replay (nothing else writes meanwhile)."""
        last = self.last_event_id
        if record is not None and last is not None and record.id <= last:
            return  # never twice, never backwards (the replay reads in id order)
        try:
            await self._send(self.framing.data(payload))
        except Exception as exc:
            self._lost(exc)
            return
        if record is not None:
            self._metrics.delivered(record, live=False)
            self.last_event_id = record.id

    def go_live(self) -> None:
        """The replay is over: send what was held (all above the replay), then live."""
        self._replaying = False
        held, self._held = self._held or deque(), None
        if self._slow or self._gone:
            self._end_if_idle()
            return
        final, self._final = self._final, None  # the group may have ended meanwhile
        for payload, record in held:
            if self._deliver(payload, record) and record is not None:
                self._metrics.delivered(record, live=True)
        if final is not None and self._final is None:
            self._final = final
        self._end_if_idle()

    def abandon(self, messages: list[str]) -> None:
        """End at once with ``messages`` (the replay failed), dropping what was held."""
        self._held = None
        self._replaying = False
        self._final = None
        self.finish(messages)

    # -- writing ---------------------------------------------------------

    def _deliver(self, payload: Payload, record: EventRecord | None) -> bool:
        """Write an accepted result now, or queue it behind the write in flight."""
        if self._writer is None and not self._queue:
            direct = self._direct
            if (direct is not None and direct(payload.utf8)) or self._write(
                self.framing.data(payload.text)
            ):
                if record is not None:
                    self.last_event_id = record.id
                return True
            if self._writer is not None:
                self._pending = record  # counted by the writer once the send completes
        elif self._queue is not None and len(self._queue) >= self._capacity:
            self._overflow()
        else:
            self._queued().append((self.framing.data(payload.text), record))
        return False

    def _queued(self) -> deque[Outgoing]:
        if self._queue is None:
            self._queue = deque()
        return self._queue

    def _write(self, text: str) -> bool:
        """Write now (True); only a send that must wait for the transport gets a task."""
        coro = self._send(text)
        assert isinstance(coro, Coroutine)
        try:
            waiting = coro.send(None)
        except StopIteration:
            return True
        except Exception as exc:
            self._lost(exc)
            return False
        self._writer = asyncio.get_running_loop().create_task(
            self._write_later(coro, waiting), name="mark1-member-writer"
        )
        return False

    async def _write_later(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _resume(coro, waiting)
            record, self._pending = self._pending, None
            self._sent(record)
            while self._queue:
                text, queued = self._queue.popleft()
                await self._send(text)
                self._sent(queued)
        except Exception as exc:
            self._lost(exc)
        finally:
            self._writer = None
        self._end_if_idle()

    def _sent(self, record: EventRecord | None) -> None:
        if record is not None:
            self._metrics.delivered(record, live=True)
            self.last_event_id = record.id

    def _overflow(self) -> None:
        # Dropped: the client resumes from lastEventId, decided when the error is sent.
        self._queue = None
        self._held = None
        self._metrics.slow_consumers.inc()
        self._slow = True
        if not self._replaying:
            self._end_if_idle()

    def _lost(self, exc: Exception) -> None:
        """The socket refused a write (it is closing, most likely): nothing more is sent."""
        log.debug("subscriber write failed: %r", exc)
        self.failure = exc
        self._gone = True
        self._queue = None
        self._held = None
        self._set_done()

    def _end_if_idle(self) -> None:
        """Send the final messages once nothing is queued or in flight."""
        if self._writer is not None or self._queue or self.ended:
            return
        if self._gone or self._closing:
            self._set_done()
            return
        if self._slow:
            self._slow = False
            error = SlowConsumer(self.last_event_id)
            formatted = GraphQLError(error.message, extensions=error.extensions).formatted
            self._final = self.framing.failed(orjson.dumps([formatted]).decode())
        if self._final is None:
            return
        self._closing = True
        queue = self._queued()
        queue.extend((text, None) for text in self._final)
        while queue and self._writer is None and not self._gone:
            text, _ = queue.popleft()
            self._write(text)
        if self._writer is None:
            self._set_done()  # else the writer sends the rest, then comes back here

    def _set_done(self) -> None:
        self.ended = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_ended(self) -> None:
        """Until the member has ended (an Event, without its deque of waiters)."""
        if self.ended:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


async def _resume(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Drive a coroutine that suspended on ``waiting`` to its end, from a task."""
    while True:
        try:
            if waiting is None:
                await asyncio.sleep(0)  # a bare yield
            else:
                # What asyncio's Task does with a future a coroutine yields: take it
                # over (clear the flag its own await set), then wait for it here.
                waiting._asyncio_future_blocking = False
                await waiting
        except asyncio.CancelledError:
            coro.close()
            raise
        except Exception:
            pass  # the coroutine reads the future's outcome itself when resumed
        try:
            waiting = coro.send(None)
        except StopIteration:
            return
