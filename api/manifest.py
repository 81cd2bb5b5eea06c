"""The trusted-documents manifest: which documents may run when MARK1_TRUSTED_DOCUMENTS is set.

Its format is the one graphql-codegen's client preset writes with
``persistedDocuments: true`` (``persisted-documents.json``): one JSON object
mapping each document's id (``sha256:<hex>`` by default) to its text.
"""

from __future__ import annotations

import json
from pathlib import Path

_FORMAT = (
    'expected a JSON object {"<document id>": "<document text>", …}, as graphql-codegen\'s '
    "client preset writes it with persistedDocuments: true"
)


def load_manifest(path: Path) -> dict[str, str]:
    """The manifest at ``path``; ValueError with one line saying what is wrong with it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        manifest = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise ValueError(f"{path} is not JSON ({exc}); {_FORMAT}") from None
    if not isinstance(manifest, dict) or not all(
        isinstance(key, str) and key and isinstance(text, str) and text.strip()
        for key, text in manifest.items()
    ):
        raise ValueError(f"{path} is not a persisted-documents manifest: {_FORMAT}")
    if not manifest:
        raise ValueError(f"{path} lists no documents, so nothing could run")
    return manifest
