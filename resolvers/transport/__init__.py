"""The GraphQL endpoint at /graphql, one concern per module.

A request or socket flows through them in this order:

- ``endpoint``     GraphQLEndpoint, strawberry's ASGI view: builds the context and
                   composes the modules below (the only one app.py imports)
- ``http``         GraphQL over HTTP: media-type negotiation, status codes, JSON codec
- ``persisted``    persisted documents: APQ hashes, documentId, the trusted-documents manifest
- ``sse``          GraphQL over SSE (graphql-sse): distinct and single-connection modes
- ``multipart``    subscriptions over multipart HTTP (Apollo's protocol)
- ``streaming``    what both HTTP streams share: auth, slots, keep-alive, expiry,
                   disconnects, running an operation on the multiplexer or strawberry
- ``params``       the GraphQL request an HTTP stream reads, and its refusals
- ``graphiql``     the GraphiQL page a browser gets on GET
- ``policy``       socket policy: origin allow-list, message size, auth at
                   connection_init, socket accounting, expiry timers, close codes
- ``admission``    what a socket message and its document must be before strawberry runs it
- ``transport_ws`` the graphql-transport-ws protocol handler
- ``legacy_ws``    the legacy graphql-ws protocol handler
- ``failures``     how both handlers end an operation that fails inside the server
"""

from __future__ import annotations

from resolvers.transport.endpoint import GraphQLEndpoint
from resolvers.transport.policy import CloseCode

__all__ = ["CloseCode", "GraphQLEndpoint"]
