"""Reading an Accept header: which media type a client ranks above GraphQL's JSON."""

from __future__ import annotations

JSON_TYPES = frozenset({"application/json", "application/graphql-response+json"})


def prefers(accept: str, media_type: str) -> bool:
    """Whether an Accept header ranks ``media_type`` above both JSON media types (RFC 9110
    quality values; ``*/*`` counts for neither).

    GraphiQL's page (text/html) and an SSE answer to a query (text/event-stream) go
    only to clients that ask for them first: browsers list text/html first when
    navigating, graphql-sse's client sends only text/event-stream, while urql and
    others list text/event-stream after the JSON types, meaning "if you must".
    """
    wanted = json = 0.0
    for item in accept.lower().split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media == media_type:
            wanted = max(wanted, quality)
        elif media in JSON_TYPES:
            json = max(json, quality)
    return wanted > 0 and wanted > json
