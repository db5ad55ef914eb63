"""Test suite: tests/unit (fakes behind small interfaces) and tests/integration (real broker, gpsd, systemd, models)."""
