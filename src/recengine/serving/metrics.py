"""Prometheus metrics from ``prometheus_client``, summed over the server's processes.

Request counts by method, route and status, a latency histogram per route, events ingested and
the version served. Routes are labelled by their template, as FastAPI matched them
(``/v1/users/{user_id}/recommendations``), never by the path a client sent, so ids do not
explode the series and an id that happens to equal a path segment cannot mislabel one.

Several processes (``recengine serve --workers N``): prometheus_client's multiprocess mode keeps
each process's values in files under ``PROMETHEUS_MULTIPROC_DIR`` (``serve`` makes a fresh one
per run), and ``/metrics``, whichever process answers it, reads all of them. One process alone
(no such directory) counts in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recengine.serving.recent import RecentRequests

__all__ = ["CONTENT_TYPE", "Metrics"]

#: Latency histogram bucket bounds, seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Whether prometheus_client keeps values in files (decided when it was imported: by
#: ``PROMETHEUS_MULTIPROC_DIR`` being set then).
_MULTIPROCESS = values.ValueClass is not values.MutexValue
#: The text exposition format written.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _ServedVersion(Collector):
    """``recengine_model_info``: read from the answering process when collected (every process
    serves the same version, each one within a poll of an activation)."""

    def __init__(self, version: Callable[[], str | None]) -> None:
        self.version = version

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("recengine_model_info", "The active model version (1 when "
                                 "loaded).", labels=["version"])
        version = self.version()
        if version is not None:
            info.add_metric([version], 1)
        yield info


class Metrics:
    """The server's metrics (one per application; see the module docstring); ``version`` says
    which version this process serves."""

    def __init__(self, version: Callable[[], str | None]) -> None:
        self._served = _ServedVersion(version)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self._served)
        self._requests = Counter("recengine_http_requests", "HTTP requests by route and status.",
                                 ["method", "route", "status"], registry=self.registry)
        self._latency = Histogram("recengine_http_request_duration_seconds", "Request latency.",
                                  ["route"], buckets=BUCKETS, registry=self.registry)
        self._events = Counter("recengine_events_ingested",
                               "Events accepted by POST /v1/events.", registry=self.registry)
        #: (method, route, status) → its counter and histogram: ``labels()`` looks them up by
        #: formatting and hashing the labels, a cost paid once per series, not per request.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        #: This process's last hour, minute by minute, for the console (the API's routes only:
        #: the console's own pages would count themselves).
        self.recent = RecentRequests()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if not route.startswith("/console"):
            self.recent.observe(method, route, status, seconds)
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self._requests.labels(method, route, str(status)), self._latency.labels(route))
        series[0].inc()
        series[1].observe(seconds)

    def add_events(self, n: int) -> None:
        self._events.inc(n)

    def render(self) -> bytes:
        """The exposition: every process's values in multiprocess mode, this one's otherwise,
        with the version this process serves."""
        if not _MULTIPROCESS:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self._served)
        return generate_latest(registry)
