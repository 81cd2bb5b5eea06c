"""Wire format of bus messages: a doorbell naming an event, never the event itself.

A message says only "install I, tenant T has committed events up to id N";
every process reads the events from its own outbox. Nothing on the channel
is trusted by value: a forged, foreign or garbled message can at most cause
a read that finds nothing new, and no message is too large for NOTIFY
(8,000 bytes) however large the event.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class Doorbell:
    """Tenant ``tenant`` of install ``install`` has committed up to event ``id``."""

    install: str
    tenant: str
    id: int


def encode(bell: Doorbell) -> str:
    return orjson.dumps({"i": bell.install, "t": bell.tenant, "e": bell.id}).decode()


def decode(message: str | bytes) -> Doorbell | None:
    """The doorbell, or None for anything else that turned up on the channel."""
    try:
        data = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    install, tenant, id = data.get("i"), data.get("t"), data.get("e")
    if (
        not isinstance(install, str)
        or not isinstance(tenant, str)
        or not isinstance(id, int)
        or isinstance(id, bool)
        or id < 1
    ):
        return None
    return Doorbell(install=install, tenant=tenant, id=id)
