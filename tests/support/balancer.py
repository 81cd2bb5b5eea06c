"""A plain TCP load balancer in front of server processes, health-checking ``/readyz``.

As a cloud load balancer does: every ``interval`` it asks each backend's
``/readyz``, and each new connection goes to the next backend (round robin)
that last answered 200; a backend that refuses the connection is skipped.
Connections already open stay where they are. Threads, like tests/ops/proxy.py,
so that it keeps balancing while the test's event loop is busy.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Balancer:
    """Listens on a free loopback port; ``ready`` holds the backends that pass the check."""

    def __init__(self, ports: list[int], *, interval: float = 0.05) -> None:
        self.backends = list(ports)
        self.ready: list[int] = []
        self.interval = interval
        self._turn = itertools.count()
        self._stopped = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def start(self) -> None:
        self._check()  # ready at once: the first connection must find a backend
        threading.Thread(target=self._health, daemon=True).start()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _health(self) -> None:
        while not self._stopped.wait(self.interval):
            self._check()

    def _check(self) -> None:
        self.ready = [port for port in list(self.backends) if _ready(port, self.interval * 10)]

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._connect()
            if upstream is None:
                client.close()
                continue
            pair = _Pair(client, upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=pair.pump, args=(src, dst), daemon=True).start()

    def _connect(self) -> socket.socket | None:
        ready = list(self.ready)
        start = next(self._turn)
        for i in range(len(ready)):
            port = ready[(start + i) % len(ready)]
            with contextlib.suppress(OSError):
                return socket.create_connection(("127.0.0.1", port), timeout=2)
        return None


def _ready(port: int, timeout: float) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class _Pair:
    """A client connection and its backend connection, pumped both ways."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self._sockets = (client, upstream)
        self._running = 2
        self._lock = threading.Lock()

    def pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(None)
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in self._sockets:  # wakes the other direction's recv
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._running -= 1
                last = self._running == 0
            if last:  # closed only once neither thread can touch them
                for sock in self._sockets:
                    sock.close()


@contextmanager
def balancing(ports: list[int], *, interval: float = 0.05) -> Iterator[Balancer]:
    balancer = Balancer(ports, interval=interval)
    balancer.start()
    try:
        yield balancer
    finally:
        balancer.stop()
