"""The lag monitor (``python -m supervisor.lag``, the Procfile's ``lag`` process): Kafka's truth about every
consumer's lag, in messages and in seconds, and its health verdict, even when no worker runs. See
docs/monitoring.md. It may use confluent-kafka; the supervisor daemon (``supervisor.daemon``) never imports it."""
