"""Where events go after the spool: the Kafka flusher and an embedded broker for tests and demos."""
