"""JSON logs, Prometheus metrics, OpenTelemetry spans and webhooks."""
