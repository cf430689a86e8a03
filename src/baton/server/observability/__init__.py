"""What the server tells its operators: metrics, request logs, traces and the webhook delivery."""

from baton import DISTRIBUTION

# prometheus_client's multiprocess mode reads its directory from this variable in each worker;
# `baton serve` sets it (baton.cli.serve) without importing the metrics.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# `--tracing` needs the `otel` extra; these are the modules it imports.
OTEL_EXTRA = f"pip install '{DISTRIBUTION}[otel]'"
_OTEL_MODULES = (
    "opentelemetry.sdk",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.instrumentation.asgi",
    "opentelemetry.instrumentation.httpx",
)


def tracing_unavailable() -> str | None:
    """The one-line error of `--tracing` without the `otel` extra, else None; imports nothing."""
    from importlib.util import find_spec

    for name in _OTEL_MODULES:
        try:
            found = find_spec(name)
        except ModuleNotFoundError:  # its parent package is missing
            found = None
        if found is None:
            return f"--tracing needs OpenTelemetry ({name} is not installed): {OTEL_EXTRA}"
    return None
