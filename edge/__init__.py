"""edge-detector: dashcam frames → YOLOv8 ONNX → geotagged detection events → durable spool → Kafka."""

__version__ = "0.1.0"
