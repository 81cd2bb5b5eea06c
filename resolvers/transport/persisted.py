"""Persisted documents: the text a request runs, from its ``query``, APQ hash or ``documentId``.

Every transport asks ``PersistedDocuments.document`` (or ``.of_payload`` for a
request's JSON object) before anything else looks at the document: GraphQL over
HTTP (GET and POST), graphql-transport-ws ``subscribe`` and legacy ``start``
payloads, SSE and multipart subscription requests (params.read_params); the
answer is the text to run, and parse and validation then come from the caches
keyed by that text (resolvers/schema.py), so a persisted document costs no
parse or validation after its first use.

Two modes:

- **Automatic persisted queries** (Apollo's APQ, ``extensions.persistedQuery =
  {version: 1, sha256Hash}``): a hash alone runs the document registered under
  it, or fails with PERSISTED_QUERY_NOT_FOUND; the client then sends hash and
  text, which must hash to it, and the pair is kept. The store is an LRU of
  ``capacity`` documents of this process (documents over
  CACHEABLE_DOCUMENT are run but not kept).
- **Trusted documents** (a manifest, api/manifest.py): only the manifest's
  documents run, named by ``documentId`` (``sha256:<hex>`` or the bare hash),
  by APQ hash, or sent as their exact text; anything else is
  PERSISTED_QUERY_NOT_ALLOWED. Nothing is ever added.

A request with a ``query`` is judged by that text (and its APQ hash, if any);
``documentId`` names the document only when there is no ``query``. An empty
``query`` beside a hash or ``documentId`` counts as none: graphql-ws clients
must send a string (its client validates ``subscribe`` messages).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Container, Mapping

from graphql import GraphQLError, GraphQLFormattedError

from api.errors import (
    BadUserInput,
    Mark1Error,
    PersistedQueryNotAllowed,
    PersistedQueryNotFound,
)
from resolvers.schema import CACHEABLE_DOCUMENT

APQ_VERSION = 1
DEFAULT_CAPACITY = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PREFIX = "sha256:"


def document_key(id: str) -> str:
    """An id as looked up: ``sha256:<hex>`` (GraphQL over HTTP, Appendix A) and a bare
    SHA-256 hex digest in either case are the same document; other ids stay as given."""
    bare = id.removeprefix(_PREFIX)
    return bare.lower() if _SHA256.fullmatch(bare.lower()) else id


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def refusal(error: Mark1Error) -> GraphQLFormattedError:
    """A refused document as the GraphQL error a client gets, with its ``extensions.code``."""
    return GraphQLError(error.message, extensions=error.extensions).formatted


class PersistedDocuments:
    """The APQ store of one process, or the trusted documents of a manifest."""

    def __init__(
        self, manifest: Mapping[str, str] | None = None, *, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self._capacity = capacity
        self._stored: OrderedDict[str, str] = OrderedDict()
        self._trusted: dict[str, str] | None = None
        self._trusted_texts: frozenset[str] = frozenset()
        if manifest is not None:
            self._trusted = {document_key(id): text for id, text in manifest.items()}
            self._trusted_texts = frozenset(manifest.values())

    def of_payload(self, payload: Mapping[str, object]) -> str | None:
        """``document`` for a request's JSON object (``query``, ``extensions``, ``documentId``)."""
        return self.document(
            query=payload.get("query"),
            extensions=payload.get("extensions"),
            document_id=payload.get("documentId"),
        )

    def document(self, *, query: object, extensions: object, document_id: object) -> str | None:
        """The text the request runs; None when it names no document at all (the
        transport's own "no query" answer applies).

        Raises PersistedQueryNotFound (an unknown hash: send the text too),
        PersistedQueryNotAllowed (trusted mode: not in the manifest) or
        BadUserInput (a malformed ``persistedQuery``, or a text that does not
        hash to the hash sent with it). A ``query`` or ``extensions`` of the
        wrong type is left for the transport to refuse as it always has.
        """
        if not isinstance(extensions, Mapping):
            extensions = {}
        apq = _apq_hash(extensions.get("persistedQuery"))
        if query == "" and (apq is not None or document_id is not None):
            query = None
        if isinstance(query, str):
            return self._with_text(query, apq)
        if query is not None:
            return None
        if document_id is not None:
            if not isinstance(document_id, str) or not document_id:
                raise BadUserInput("documentId must be a non-empty string")
            return self._lookup(document_key(document_id))
        if apq is not None:
            return self._lookup(apq)
        return None

    def _with_text(self, query: str, apq: str | None) -> str:
        if apq is not None and sha256_hex(query) != apq:
            raise BadUserInput("persistedQuery.sha256Hash does not match the query's SHA-256")
        if self._trusted is not None:
            if query not in self._trusted_texts:
                raise PersistedQueryNotAllowed(
                    "Only trusted documents run on this server, and this document is not "
                    "in its manifest (send a listed document's documentId)"
                )
            return query
        if apq is not None and len(query) <= CACHEABLE_DOCUMENT:
            self._stored[apq] = query
            self._stored.move_to_end(apq)
            if len(self._stored) > self._capacity:
                self._stored.popitem(last=False)
        return query

    def _lookup(self, key: str) -> str:
        if self._trusted is not None:
            text = self._trusted.get(key)
            if text is None:
                raise PersistedQueryNotAllowed(
                    f"Only trusted documents run on this server, and {key!r} is not in its manifest"
                )
            return text
        text = self._stored.get(key)
        if text is None:
            raise PersistedQueryNotFound()
        self._stored.move_to_end(key)
        return text


def _apq_hash(persisted: object) -> str | None:
    """The SHA-256 of an ``extensions.persistedQuery``, lower-case; None when absent."""
    if persisted is None:
        return None
    if not isinstance(persisted, Mapping) or persisted.get("version") != APQ_VERSION:
        raise BadUserInput(
            f"Unsupported persisted query: extensions.persistedQuery must be "
            f"{{version: {APQ_VERSION}, sha256Hash}}"
        )
    digest = persisted.get("sha256Hash")
    key = document_key(digest) if isinstance(digest, str) else ""
    if not _SHA256.fullmatch(key):
        raise BadUserInput("persistedQuery.sha256Hash must be a SHA-256 hex digest")
    return key


def fill_operation(
    documents: PersistedDocuments, message: object, active: Container[str]
) -> GraphQLFormattedError | None:
    """Put the text of a socket ``subscribe`` / ``start`` message's document in its payload's
    ``query``; the error to end that operation with when the document is refused.

    Any other message, one of the wrong shape, or one reusing an ``active``
    operation id is left as it is: the protocol handler deals with it as
    before (admission.well_formed, 4409 for a duplicate id).
    """
    if not isinstance(message, dict) or message.get("type") not in ("subscribe", "start"):
        return None
    id, payload = message.get("id"), message.get("payload")
    if not isinstance(payload, dict) or not isinstance(id, str) or id in active:
        return None
    try:
        text = documents.of_payload(payload)
    except Mark1Error as refused:
        return refusal(refused)
    if text is not None:
        payload["query"] = text
    return None
