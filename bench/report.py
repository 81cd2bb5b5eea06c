"""Figures: percentiles, the machine they were measured on, a table and a markdown table."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values`` (q in 0..100)."""
    if not values:
        return float("nan")
    rank = max(0, min(len(values) - 1, round(q / 100 * len(values) + 0.5) - 1))
    return values[rank]


def summary(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1] if ordered else float("nan"),
    }


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    cfg, r = result["config"], result["results"]
    lat, con = r["latency_seconds"], r["connect_seconds"]
    memory = r["server_memory"]
    per_conn = memory.get("per_connection_kib")
    return [
        ("subscribers x events", f"{cfg['subscribers']:,} x {cfg['events']:,}"),
        (
            "publish rate (target / achieved)",
            f"{cfg['rate'] or 'max'} / {r['publish_rate']:.1f} events/s",
        ),
        ("messages delivered (expected)", f"{r['delivered']:,} ({r['expected']:,})"),
        (
            "missing / duplicates / out of order",
            f"{r['missing']} / {r['duplicates']} / {r['out_of_order']}",
        ),
        ("delivered messages per second", f"{r['delivered_per_second']:,.0f}"),
        (
            "server CPU per delivered message",
            f"{cpu * 1e6:,.0f} µs (≈ {1 / cpu:,.0f} messages per CPU-second)"
            if (cpu := r.get("server_cpu_seconds_per_message"))
            else "n/a (no server pid)",
        ),
        ("fan-out latency p50 / p90", f"{_ms(lat['p50'])} / {_ms(lat['p90'])}"),
        ("fan-out latency p99 / max", f"{_ms(lat['p99'])} / {_ms(lat['max'])}"),
        ("connect time p50 / p99 per socket", f"{_ms(con['p50'])} / {_ms(con['p99'])}"),
        ("connect time, all sockets", f"{r['connect_wall_seconds']:.2f} s"),
        (
            "server RSS before → after connecting",
            f"{memory['before_kib'] / 1024:,.1f} → {memory['after_kib'] / 1024:,.1f} MiB"
            if per_conn is not None
            else "n/a (no server pid)",
        ),
        ("server memory per connection", f"{per_conn:,.1f} KiB" if per_conn is not None else "n/a"),
        ("slow consumers dropped (server)", f"{r['slow_consumers_dropped']}"),
    ]


def saturation(result: dict[str, Any]) -> str | None:
    """A warning when the server fell behind the offered load, so latency is mostly queueing."""
    cfg, r = result["config"], result["results"]
    if not cfg["rate"] or r["publish_rate"] >= 0.9 * cfg["rate"]:
        return None
    return (
        f"The server could not keep up: it accepted {r['publish_rate']:.1f} of the "
        f"{cfg['rate']:g} events/s offered ({r['offered_per_second']:,.0f} messages/s), so "
        "delivered/s is its capacity here and the latency figures are mostly queueing."
    )


def table(result: dict[str, Any]) -> str:
    pairs = rows(result)
    width = max(len(k) for k, _ in pairs)
    lines = [f"  {k:<{width}}  {v}" for k, v in pairs]
    if warning := saturation(result):
        lines += ["", f"  note: {warning}"]
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        f"Measured {result['measured_at'][:10]} on {m['nproc']} x {m['cpu']}, "
        f"Python {m['python']}, {m['system']}; server: {cfg['server']}; "
        f"{cfg['client_processes']} client process(es), "
        f"permessage-deflate {'on' if cfg['deflate'] else 'off'}.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows(result)),
        "",
        *([f"Note: {warning}", ""] if (warning := saturation(result)) else []),
        f"Command: `{result['command']}`",
    ]
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    as_json = directory / "latest.json"
    as_md = directory / "latest.md"
    as_json.write_text(json.dumps(result, indent=2) + "\n")
    as_md.write_text(markdown(result))
    return as_json, as_md


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
