"""Redis as the place the processes of an install share state, never as a dependency.

Each process mirrors its own figures (sockets per subject, the counters behind
``systemMetrics``) into one hash of its own, ``mark1:{<install>}:proc:<id>``, and
lists itself in ``mark1:{<install>}:procs`` with an expiry time; a heartbeat
renews both. A process that crashes stops counting within five heartbeats. A
check that must hold across processes (a socket slot, a token bucket) is one Lua
script, atomic in Redis. The install id keeps installs sharing a Redis apart, and
as the hash tag it keeps the registry in one slot of a Redis Cluster.

Every call is bounded by a short timeout. When one fails the store turns
degraded (logged once): callers count per process, and only the heartbeat keeps
trying. When Redis answers again the process rewrites its whole hash (what it
held there may be stale or gone), and the figures are shared again.

This process's writes to its own hash go out one at a time, in the order its
figures changed, each carrying a figure's value at that moment: whatever the
interleaving, the last write of a figure is its current value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# The longest one Redis call may take: what a stalled Redis costs a request, once,
# before the store turns degraded and callers stop asking it.
TIMEOUT = 0.5
# Heartbeats a process may miss before its figures stop counting.
_LIVES = 5
# Present in a process's hash once it has been written whole.
_MARK = "~"

_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: procs, own hash. ARGV: me, field, value, limit, hash prefix.
# -1: own hash missing (write it whole, then ask again); 0: over the limit; 1: written.
_ADMIT = (
    _NOW_MS
    + """
if redis.call('HEXISTS', KEYS[2], '~') == 0 then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = tonumber(ARGV[3])
for _, proc in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if proc ~= ARGV[1] then
    total = total + (tonumber(redis.call('HGET', ARGV[5] .. proc, ARGV[2])) or 0)
  end
end
if total > tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
)

# KEYS: procs, own hash. ARGV: me, ttl ms, whole ('1': replace the hash), field, value, ...
# 0: own hash missing and not whole (write it whole); 1: written and renewed.
_BEAT = (
    _NOW_MS
    + """
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], '~', '1')
elseif redis.call('HEXISTS', KEYS[2], '~') == 0 then
  return 0
end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '0' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
"""
)

# KEYS: procs. ARGV: me, hash prefix, field, ... Each field summed over the other live processes.
_TOTALS = (
    _NOW_MS
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local fields = {}
local sums = {}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
  sums[#sums + 1] = 0
end
for _, proc in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if proc ~= ARGV[1] then
    local values = redis.call('HMGET', ARGV[2] .. proc, unpack(fields))
    for i, value in ipairs(values) do
      sums[i] = sums[i] + (tonumber(value) or 0)
    end
  end
end
return sums
"""
)

# KEYS: bucket. ARGV: rate per second, burst, cost. Returns the seconds to wait ('0': taken).
_BUCKET = (
    _NOW_MS
    + """
local rate = tonumber(ARGV[1]) / 1000
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1]) or burst
local at = tonumber(held[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate / 1000
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return string.format('%.6f', wait)
"""
)

Figures = Callable[[], Mapping[str, int]]


class ClusterStore:
    """This process's place in Redis: its mirrored figures, the shared checks, its health."""

    def __init__(self, url: str, *, heartbeat: float, timeout: float = TIMEOUT) -> None:
        self.heartbeat = heartbeat
        self.process = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._url = url
        self._timeout = timeout
        self._ttl_ms = max(int(heartbeat * _LIVES * 1000), 1000)
        self._redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),  # the heartbeat is the retry
        )
        self._admit = self._redis.register_script(_ADMIT)
        self._beat = self._redis.register_script(_BEAT)
        self._totals = self._redis.register_script(_TOTALS)
        self._bucket = self._redis.register_script(_BUCKET)
        self._procs = self._own = self._prefix = self._buckets = ""
        self._figures: Figures = dict
        self._mine: dict[str, int] = {}  # mirrored figures that change with traffic: sockets
        self._dirty: set[str] = set()
        self._sent: dict[str, int] = {}  # the counters, as last written
        self._whole = True
        self._order = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._answered_once = False
        self.degraded = True  # until Redis has answered

    @property
    def shared(self) -> bool:
        """Whether figures and limits are shared right now (else: per process)."""
        return self._task is not None and not self.degraded

    async def start(self, install: str, figures: Figures) -> None:
        """Join the install's registry; serve degraded when Redis does not answer."""
        tag = f"mark1:{{{install}}}:"
        self._procs, self._prefix = f"{tag}procs", f"{tag}proc:"
        self._own = self._prefix + self.process
        self._buckets = f"mark1:{install}:rate:"
        self._figures = figures
        await self._write(counters=True)
        self._task = asyncio.create_task(self._renew(), name="mark1-cluster-heartbeat")

    async def stop(self) -> None:
        """Leave the registry at once (a crash leaves it within five heartbeats)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if not self.degraded:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._timeout):
                        await self._redis.zrem(self._procs, self.process)
                        await self._redis.delete(self._own)
        await self._redis.aclose()

    # -- this process's figures ------------------------------------------

    def set(self, field: str, value: int) -> None:
        """Mirror one of this process's figures (a socket count); written soon, in order."""
        if value:
            self._mine[field] = value
        else:
            self._mine.pop(field, None)
        self._dirty.add(field)
        self._wake.set()

    async def admit(self, field: str, value: int, limit: int) -> bool | None:
        """Whether this process's ``value`` of ``field`` plus every other live process's
        is within ``limit`` (then it is written, atomically); None when Redis does not
        answer, and the caller decides alone."""
        args: list[str | int] = [self.process, field, value, limit, self._prefix]
        async with self._order:
            for _ in range(2):
                if not self.shared:
                    return None
                result = await self._call(lambda: self._admit([self._procs, self._own], args))
                if result is None:
                    return None
                if result != -1:
                    return bool(result)
                self._whole = True  # the hash expired, or Redis lost it: write it whole
                if not await self._write_locked(counters=True):
                    return None
        return None

    # -- what every process shares ---------------------------------------

    async def totals(self, fields: Sequence[str]) -> dict[str, int] | None:
        """Each field summed over every other live process; None when not shared."""
        if not self.shared:
            return None
        args = [self.process, self._prefix, *fields]
        result = await self._call(lambda: self._totals([self._procs], args))
        if result is None:
            return None
        return {field: int(value) for field, value in zip(fields, result, strict=True)}

    async def take(self, bucket: str, rate: float, burst: int, cost: float) -> float | None:
        """Take ``cost`` tokens from a shared bucket: 0 when taken, else the seconds until
        they would be there; None when not shared."""
        if not self.shared:
            return None
        result = await self._call(
            lambda: self._bucket([self._buckets + bucket], [rate, burst, cost])
        )
        return None if result is None else float(result)

    # -- heartbeat -------------------------------------------------------

    async def _renew(self) -> None:
        """Write changed figures as they change, everything every heartbeat (jittered)."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.heartbeat
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_beat - loop.time(), 0)):
                    await self._wake.wait()
            self._wake.clear()
            beat = loop.time() >= next_beat
            if beat:
                next_beat = loop.time() + self.heartbeat * random.uniform(0.8, 1.0)
            elif self.degraded:
                continue  # only the heartbeat asks a Redis that did not answer
            try:
                await self._write(counters=beat)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster heartbeat failed")

    async def _write(self, *, counters: bool) -> bool:
        async with self._order:
            return await self._write_locked(counters=counters)

    async def _write_locked(self, *, counters: bool) -> bool:
        """Write what changed (everything when whole); renew the hash and the registry."""
        whole = self._whole or self.degraded
        figures = dict(self._figures()) if counters or whole else {}
        if whole:
            pairs: dict[str, int] = {**self._mine, **figures}
        else:
            pairs = {f: self._mine.get(f, 0) for f in self._dirty}
            pairs |= {f: v for f, v in figures.items() if self._sent.get(f) != v}
        dirty, self._dirty = self._dirty, set()
        args: list[str | int] = [self.process, self._ttl_ms, "1" if whole else "0"]
        for field, value in pairs.items():
            args += [field, value]
        result = await self._call(lambda: self._beat([self._procs, self._own], args))
        if result == 1:
            self._whole = False
            self._sent = figures if whole else self._sent | figures
            return True
        self._dirty |= dirty
        self._whole = True
        if result == 0:  # the hash expired (a stalled process) or Redis lost it
            return await self._write_locked(counters=True)
        return False

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any | None:
        """A command's answer, or None when Redis does not give one in time."""
        try:
            async with asyncio.timeout(self._timeout * 2):  # connect, then answer
                result = await command()
        except (RedisError, OSError, TimeoutError) as exc:
            if not self.degraded:
                log.warning(
                    "Redis %s does not answer (%s): rate limits, sockets per subject and "
                    "systemMetrics are per process until it does",
                    _redact(self._url),
                    str(exc) or type(exc).__name__,
                )
            self.degraded = True
            return None
        if self.degraded:
            log.info(
                "Redis %s %s: rate limits, sockets per subject and systemMetrics are shared "
                "by every process",
                _redact(self._url),
                "answers again" if self._answered_once else "answers",
            )
            self._answered_once = True
            self.degraded = False
        return result


def _redact(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"
