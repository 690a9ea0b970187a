"""Prometheus text exposition, written by hand (no prometheus_client dependency)."""

from __future__ import annotations

import threading
from collections import defaultdict

__all__ = ["Metrics"]

#: Latency histogram bucket bounds, seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counts by route and status, a latency histogram per route, events ingested."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.latency: dict[str, list[float]] = {}
        self.events_ingested = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            hist = self.latency.setdefault(route, [0.0] * (len(BUCKETS) + 2))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist[i] += 1
            hist[-2] += 1  # count (+Inf)
            hist[-1] += seconds  # sum

    def add_events(self, n: int) -> None:
        with self._lock:
            self.events_ingested += n

    def render(self, model_version: str | None) -> str:
        lines = ["# HELP recengine_http_requests_total HTTP requests by route and status.",
                 "# TYPE recengine_http_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(f'recengine_http_requests_total{{method="{method}",'
                             f'route="{_escape(route)}",status="{status}"}} {n}')
            lines += ["# HELP recengine_http_request_duration_seconds Request latency.",
                      "# TYPE recengine_http_request_duration_seconds histogram"]
            for route, hist in sorted(self.latency.items()):
                label = f'route="{_escape(route)}"'
                name = "recengine_http_request_duration_seconds"
                for bound, count in zip(BUCKETS, hist, strict=False):
                    lines.append(f'{name}_bucket{{{label},le="{bound}"}} {int(count)}')
                lines.append(f'{name}_bucket{{{label},le="+Inf"}} {int(hist[-2])}')
                lines.append(f"{name}_count{{{label}}} {int(hist[-2])}")
                lines.append(f"{name}_sum{{{label}}} {hist[-1]:.6f}")
            events = self.events_ingested
        lines += ["# HELP recengine_events_ingested_total Events accepted by POST /v1/events.",
                  "# TYPE recengine_events_ingested_total counter",
                  f"recengine_events_ingested_total {events}",
                  "# HELP recengine_model_info The active model version (1 when loaded).",
                  "# TYPE recengine_model_info gauge"]
        if model_version is not None:
            lines.append(f'recengine_model_info{{version="{_escape(model_version)}"}} 1')
        return "\n".join(lines) + "\n"
