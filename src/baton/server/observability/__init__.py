"""What the server tells its operators: metrics, request logs and the webhook delivery."""
