"""Prometheus metrics of the three services.

Metric objects are process-wide by Prometheus' design. With several worker processes, the
server runner sets PROMETHEUS_MULTIPROC_DIR before this module is imported, so every worker
writes its samples to that folder and the first worker serves their sum.
"""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Billing counters of the Go service; names and label are read by the billing pipeline.
EGRESS_BYTES = Counter(
    "deploys_registry_egress_bytes", "Blob bytes sent to clients", ["project_id"]
)
DOWNLOAD_COUNT = Counter("deploys_registry_download_count", "Blob downloads served", ["project_id"])
UPLOAD_BYTES = Counter(
    "deploys_registry_upload_bytes", "Blob bytes received from clients", ["project_id"]
)
UPLOAD_COUNT = Counter("deploys_registry_upload_count", "Blob uploads completed", ["project_id"])

UPLOAD_STAGED_BYTES = Gauge(
    "registry_upload_staged_bytes",
    "Bytes held by a project's open upload sessions (UPLOAD_BYTES_PER_PROJECT bounds it)",
    ["project"],
    multiprocess_mode="mostrecent",
)

REQUEST_DURATION = Histogram(
    "registry_http_request_duration_seconds",
    "Time to answer an HTTP request, until the handler returned",
    ["service", "method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

JOB_DURATION = Histogram(
    "registry_job_duration_seconds",
    "Duration of a job run",
    ["job", "outcome"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600),
)
JOB_ITEMS = Counter(
    "registry_job_items_total",
    "Items a job scanned or changed, by kind (scanned, unlinked, deleted, bytes_freed, ...)",
    ["job", "kind"],
)
JOB_LAST_SUCCESS = Gauge(
    "registry_job_last_success_timestamp_seconds",
    "Unix time of the last successful run of a job",
    ["job"],
    multiprocess_mode="max",
)


def metrics_registry() -> CollectorRegistry:
    """The registry to expose: the multiprocess aggregate when workers share a folder."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def create_metrics_app() -> web.Application:
    """A tiny app serving `/metrics` in the Prometheus text format."""
    registry = metrics_registry()

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app
