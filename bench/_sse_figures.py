"""The figures of bench/sse.py: the exactly-once check, latency rows, and what /metrics says."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench._sse_probe import pct

__all__ = ["check_deliveries", "gauge", "gc_report", "histogram", "quantile_bound", "row"]


def row(label: str, values_ms: list[float]) -> str:
    if not values_ms:
        return f"{label:<34}{'(none)':>8}"
    return (f"{label:<34}{len(values_ms):>8}{pct(values_ms, 50):>10.1f}{pct(values_ms, 90):>10.1f}"
            f"{pct(values_ms, 99):>10.1f}{max(values_ms):>10.1f}{statistics.fmean(values_ms):>10.1f}")


def check_deliveries(arrivals: dict[int, list[tuple[int, float]]], chain_ids: list[str],
                     commits: dict[tuple[str, int], float]) -> dict:
    """Every client must see every version committed after it connected, once, in order: the counts of
    what was not so, each delivery's latency (ms), and per event the first and the last client's."""
    by_chain: dict[str, list[int]] = {}
    for chain, version in commits:
        by_chain.setdefault(chain, []).append(version)
    latencies: list[float] = []
    first: dict[tuple[str, int], float] = {}
    last: dict[tuple[str, int], float] = {}
    missing = duplicates = out_of_order = 0
    for n, seen in arrivals.items():
        chain = chain_ids[n % len(chain_ids)]
        live = [v for v, _ in seen if v > 2]
        duplicates += len(live) - len(set(live))
        out_of_order += sum(1 for a, b in zip(live, live[1:]) if b <= a)
        missing += len(set(by_chain.get(chain, ())) - set(live))
        for version, at in seen:
            committed = commits.get((chain, version))
            if committed is not None:
                ms = (at - committed) * 1000
                latencies.append(ms)
                key = (chain, version)
                first[key] = min(first.get(key, ms), ms)
                last[key] = max(last.get(key, ms), ms)
    return {"latencies": latencies, "first": list(first.values()), "last": list(last.values()),
            "missing": missing, "duplicates": duplicates, "out_of_order": out_of_order}


def histogram(text: str, name: str) -> list[tuple[float, float]]:
    """(upper bound in seconds, cumulative count) of a Prometheus histogram in /metrics text."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), float(line.rsplit(" ", 1)[1])))
    return sorted(buckets)


def quantile_bound(buckets: list[tuple[float, float]], q: float) -> float:
    """The smallest bucket bound under which at least a fraction `q` of the observations fall."""
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= q * total)


def gauge(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith(f"{name}_created"):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def gc_report(path: Path, windows: dict[str, tuple[float, float]]) -> str:
    """The gateway's cyclic-GC passes in each time window (bench/_sse_gateway.py wrote them)."""
    try:
        stats = json.loads(path.read_text())
        path.unlink()
    except (OSError, ValueError):
        return "gateway GC: no figures (the gateway did not exit cleanly)"
    lines = [f"gateway GC (threshold {tuple(stats['threshold'])}, {stats['frozen']} objects frozen at start-up):"]
    for window, (since, until) in windows.items():
        parts = []
        for generation, passes in sorted(stats["passes"].items()):
            took = [d * 1000 for at, d in passes if since <= at <= until]
            if took:
                parts.append(f"gen{generation} {len(took)} passes, {sum(took):.0f} ms, longest {max(took):.1f} ms")
        lines.append(f"  while {window}: " + ("; ".join(parts) or "no passes"))
    return "\n".join(lines)
