# The two commands:  make demo  (the main job on the sample drive and a local broker)  and  make test.
VENV ?= .venv
EDGE_DATA ?= $(abspath ../shared/data)
MODEL ?= $(or $(EDGE_MODEL),$(EDGE_DATA)/models/yolov8n.onnx)
SAMPLE ?= $(EDGE_DATA)/video/stop_sign_approach.mp4
PYTEST_ARGS ?=

.PHONY: demo test bench clean
demo: $(VENV)/.ready
	$(VENV)/bin/edge demo --model "$(MODEL)" "$(SAMPLE)"

test: $(VENV)/.ready
	EDGE_TEST_DATA="$(EDGE_DATA)" $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.ready
	$(VENV)/bin/python -m pip install -q -e ".[bench]"
	$(VENV)/bin/python bench/replay_fps.py
	$(VENV)/bin/python bench/live_latency.py
	$(VENV)/bin/python bench/spool_bench.py
	$(VENV)/bin/python bench/drain_bench.py
	$(VENV)/bin/python bench/flush_bench.py
	$(VENV)/bin/python bench/csv_bench.py

$(VENV)/.ready: pyproject.toml install.sh
	./install.sh --dev $(VENV)
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache
