"""The service's logs: who and what a line is about (``context``), credentials kept out
of every line (``redaction``), and text or JSON-lines output (``formatters``, ``config``)."""
