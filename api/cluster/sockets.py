"""Sockets per subject (``MAX_SOCKETS_PER_SUBJECT``): in this process, and across
every process of the install when a cluster store is configured and answering."""

from __future__ import annotations

from collections import Counter

from api.cluster.store import ClusterStore


class SocketSlots:
    """Each subject's open sockets, counted against one limit."""

    def __init__(self, limit: int, store: ClusterStore | None = None) -> None:
        self.limit = limit
        self._store = store
        self._held: Counter[str] = Counter()

    def held(self, subject: str) -> int:
        """The subject's sockets in this process."""
        return self._held[subject]

    async def take(self, subject: str) -> bool:
        """Take one of the subject's slots; False when it has ``limit`` sockets already
        (in all processes together while Redis answers, in this one otherwise)."""
        # Held before asking, so that a concurrent take of the same subject counts it.
        self._held[subject] += 1
        held = self._held[subject]
        verdict = None
        if self._store is not None:
            self._store.set(_field(subject), held)
            try:
                verdict = await self._store.admit(_field(subject), held, self.limit)
            except BaseException:  # cancelled: the socket is gone
                self.give_back(subject)
                raise
        if held <= self.limit if verdict is None else verdict:
            return True
        self.give_back(subject)
        return False

    def give_back(self, subject: str) -> None:
        """A socket of the subject closed (or was refused)."""
        self._held[subject] -= 1
        if self._held[subject] <= 0:
            del self._held[subject]
        if self._store is not None:
            self._store.set(_field(subject), self._held[subject])


def _field(subject: str) -> str:
    return f"s:{subject}"
