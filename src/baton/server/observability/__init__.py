"""What the server tells its operators: metrics, request logs and the webhook delivery."""

# prometheus_client's multiprocess mode reads its directory from this variable in each worker;
# `baton serve` sets it (baton.cli.serve) without importing the metrics.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
