"""Benchmarks for Mark-1 Realtime, run from processes of their own over real sockets."""
