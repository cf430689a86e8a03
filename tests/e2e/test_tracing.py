"""`baton serve --workers 2 --tracing`: each worker process sets up its own tracer provider,
exports its spans over OTLP/HTTP to the configured endpoint (a real socket), and flushes them as
it stops."""

from __future__ import annotations

import os

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.e2e.conftest import ServerFactory
from tests.server.test_tracing import receiver

pytestmark = [
    pytest.mark.e2e,
    # Two worker processes importing OpenTelemetry: seconds the suite's budget keeps for others.
    pytest.mark.skipif(
        not os.environ.get("BATON_TEST_TRACING_WORKERS"),
        reason="multi-process tracing export: set BATON_TEST_TRACING_WORKERS=1 to run it",
    ),
]
REQUESTS = 24


def test_every_worker_exports_its_own_spans_and_flushes_them_as_it_stops(
    baton_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with receiver() as (url, bodies):
        monkeypatch.setenv("BATON_TRACING", "1")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        # process.pid in each span's resource: which worker made it.
        monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "process")
        server = baton_server(workers=2)
        # A fresh connection per request, so that both workers answer some.
        for _ in range(REQUESTS):
            response = httpx.get(f"{server.url}/healthz", headers={"Connection": "close"})
            assert response.status_code == 200
        # Sooner than the batch processor's 5 s: what arrives is what each worker flushed as
        # it stopped.
        server.stop()
        served = spans_by_process(bodies, "GET /healthz")
    assert sum(served.values()) == REQUESTS, served
    assert len(served) == 2, f"both workers exported: {served}"


def spans_by_process(bodies: list[tuple[str, str, bytes]], name: str) -> dict[int, int]:
    """How many spans named `name` each process (its resource's process.pid) exported."""
    found: dict[int, int] = {}
    for _path, _type, body in list(bodies):
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            pids = [
                attribute.value.int_value
                for attribute in resource_spans.resource.attributes
                if attribute.key == "process.pid"
            ]
            count = sum(
                1
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
                if span.name == name
            )
            if count:
                (pid,) = pids
                found[pid] = found.get(pid, 0) + count
    return found
