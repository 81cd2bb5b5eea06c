"""Wire format of events on the bus: compact JSON, or a reference when too large."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from api.domain import EventRecord


@dataclass(frozen=True)
class EventRef:
    """A pointer to an event the listener must read from the database."""

    tenant: str
    id: int


def encode(record: EventRecord, *, max_bytes: int | None) -> str:
    """Full JSON, unless over ``max_bytes`` (PostgreSQL NOTIFY takes < 8000 bytes)."""
    body = orjson.dumps(record.model_dump(mode="json"))
    if max_bytes is not None and len(body) > max_bytes:
        body = orjson.dumps({"ref": True, "tenant": record.tenant, "id": record.id})
    return body.decode()


def decode(message: str | bytes) -> EventRecord | EventRef:
    data = orjson.loads(message)
    if data.get("ref"):
        return EventRef(tenant=str(data["tenant"]), id=int(data["id"]))
    return EventRecord.model_validate(data)
