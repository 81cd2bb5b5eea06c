"""The soak's verdict (why it failed, what to doubt) and its figures as tables."""

from __future__ import annotations

from typing import Any


def failures(result: dict[str, Any], *, max_rss_growth: float) -> list[str]:
    """Why the soak failed; empty when it passed."""
    s, out = result["subscribers"], []
    if s["connected"] < s["asked"] or s["judged"] < s["connected"]:
        out.append(f"{s['connected']} of {s['asked']} sockets connected, {s['judged']} reported")
    if s["with_a_fault"]:
        out.append(
            f"{s['with_a_fault']} subscribers lost {s['lost']}, duplicated {s['duplicated']}, "
            f"reordered {s['out_of_order']} events"
        )
    if s["errors"]:
        out.append(f"socket errors, e.g. {s['errors'][0]}")
    if result["writes"]["failed"]:
        out.append(
            f"{result['writes']['failed']} writes failed: {result['writes']['first_failure']}"
        )
    if not result["events"]["written"]:
        out.append("no event was written")
    if result["servers_exited_early"]:
        out.append(f"servers exited during the soak: {result['servers_exited_early']}")
    for name, trend in result["memory"].items():
        growth = trend["growth_percent"]
        if growth is None:
            out.append(f"{name}: too few RSS samples")
        elif growth > max_rss_growth:
            out.append(
                f"{name}: RSS grew {growth:.1f} % after warm-up (limit {max_rss_growth:g} %)"
            )
    return out


def warnings(result: dict[str, Any]) -> list[str]:
    """Figures to doubt: a load generator near a full core measures itself."""
    return [
        f"{name} used {share:.0%} of a core: the load generator may be the bottleneck"
        for name, share in result["cpu_share_of_a_core"].items()
        if name.startswith("load") and share > 0.85
    ]


def lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    s, e, lat = result["subscribers"], result["events"], result["latency_ms"]
    rate = result["config"]["rate"]
    rows = [
        (
            "subscribers (connected / asked)",
            f"{s['connected']:,} / {s['asked']:,}, half per process",
        ),
        (
            "events written",
            f"{e['written']:,} in {result['seconds']:.0f} s "
            f"({e['written'] / max(result['seconds'], 1e-9):.1f}/s; {rate:g}/s asked), "
            f"{result['writes']['failed']} writes failed",
        ),
        ("messages delivered", f"{result['delivered']:,}"),
        (
            "per subscriber: lost / duplicated / out of order",
            f"{s['lost']} / {s['duplicated']} / {s['out_of_order']} in all; "
            f"{s['with_a_fault']} subscribers with any",
        ),
        (
            "delivery latency p50 / p99 / max",
            f"{lat['p50']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} ms",
        ),
        (
            "write latency p50 / p99",
            f"{result['writes']['latency_ms']['p50']:.1f} / "
            f"{result['writes']['latency_ms']['p99']:.1f} ms",
        ),
    ]
    for name, t in result["memory"].items():
        if t["growth_percent"] is None:
            rows.append((f"{name} RSS", "n/a"))
            continue
        rows.append(
            (
                f"{name} RSS: start, after warm-up → end (fit); slope",
                f"{t['first_mib']:.1f}, {t['warm_mib']:.1f} → {t['end_mib']:.1f} MiB "
                f"({t['growth_percent']:+.1f} %); {t['slope_mib_per_minute']:+.2f} MiB/min",
            )
        )
    for name, f in result["servers"].items():
        cpu = f["cpu_us_per_delivered_message"]
        per = f["kib_per_connection"]
        rows.append(
            (
                f"{name}: connections, messages; CPU per message; memory",
                f"{f['connections']:,}, {f['delivered']:,}; "
                + (f"{cpu:,.0f} µs (writes included); " if cpu else "n/a; ")
                + f"{f['idle_mib']:.0f} MiB idle"
                + (f" + {per:.1f} KiB per connection" if per is not None else ""),
            )
        )
    for name, share in result["cpu_share_of_a_core"].items():
        rows.append((f"CPU, {name}", f"{share:.0%} of a core"))
    outbox = result.get("outbox")
    if outbox and outbox["bytes_per_event"]:
        rows.append(
            (
                "outbox on disk (PostgreSQL, table + indexes)",
                f"{outbox['rows']:,} events, {outbox['bytes'] / 1024 / 1024:.1f} MiB: "
                f"{outbox['bytes_per_event']:,.0f} bytes per event (a row averages "
                f"{outbox['row_bytes']:,.0f} bytes; indexes "
                f"{outbox['index_bytes'] / outbox['rows']:,.0f} per event)",
            )
        )
    return rows


def markdown(result: dict[str, Any], rows: list[tuple[str, str]], bad: list[str]) -> str:
    m = result["machine"]
    out = [
        f"Measured {result['measured_at'][:10]} on {m['nproc']} x {m['cpu']}, Python "
        f"{m['python']}, {m['system']}; load average at start {m['load_average_at_start']}.",
        "",
        "| measure | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        f"Verdict: {'FAILED: ' + '; '.join(bad) if bad else 'passed'}.",
        "",
        f"Command: `{result['command']}`",
    ]
    return "\n".join(out) + "\n"
