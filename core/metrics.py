"""``/metrics`` in Prometheus' text format (0.0.4). Pure rendering; the counts come from the
store (so they survive restarts) and from the running pool and listener."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

DURATION_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return "{" + inner + "}"


def render(
    *,
    deploys_by_result: Mapping[str, int],
    deploy_seconds: Sequence[float],
    peripheries_connected: int,
    peripheries_known: int,
    webhooks_by_verdict: Mapping[str, int],
    events_dropped: Mapping[str, int] | None = None,
    events_dropped_gone: int = 0,
    events_published: int = 0,
) -> str:
    lines: list[str] = []

    def metric(
        name: str, kind: str, help_text: str, samples: Iterable[tuple[str, dict[str, str], float]]
    ) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            lines.append(f"{name}{suffix}{_labels(labels)} {value:g}")

    metric(
        "stackward_deploys_total",
        "counter",
        "Finished stack deploys by result.",
        [("", {"result": r}, float(n)) for r, n in sorted(deploys_by_result.items())],
    )
    buckets = []
    for bound in DURATION_BUCKETS:
        buckets.append(
            ("_bucket", {"le": f"{bound:g}"}, float(sum(s <= bound for s in deploy_seconds)))
        )
    buckets.append(("_bucket", {"le": "+Inf"}, float(len(deploy_seconds))))
    buckets.append(("_sum", {}, float(sum(deploy_seconds))))
    buckets.append(("_count", {}, float(len(deploy_seconds))))
    metric(
        "stackward_deploy_duration_seconds",
        "histogram",
        "Time from a stack deploy's start to its end (healthy or failed).",
        buckets,
    )
    metric(
        "stackward_peripheries_connected",
        "gauge",
        "Servers with an authenticated channel now.",
        [("", {}, float(peripheries_connected))],
    )
    metric(
        "stackward_peripheries_known",
        "gauge",
        "Servers the applied resources name.",
        [("", {}, float(peripheries_known))],
    )
    metric(
        "stackward_webhooks_total",
        "counter",
        "Webhook deliveries by verdict since the core started.",
        [("", {"verdict": v}, float(n)) for v, n in sorted(webhooks_by_verdict.items())],
    )
    metric(
        "stackward_events_published_total",
        "counter",
        "Events published since the core started.",
        [("", {}, float(events_published))],
    )
    dropped = [("", {"subscriber": k}, float(n)) for k, n in sorted((events_dropped or {}).items())]
    dropped.append(("", {"subscriber": "gone"}, float(events_dropped_gone)))
    metric(
        "stackward_events_dropped_total",
        "counter",
        "Events dropped for a subscriber that fell behind (connected ones by id; 'gone': all"
        " that have left).",
        dropped,
    )
    return "\n".join(lines) + "\n"
