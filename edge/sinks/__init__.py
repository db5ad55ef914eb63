"""Where events go after the spool: the Kafka flusher, a JSON-lines file, the flusher's typed seams."""
