"""Golden replay: the shared stop-sign drive through `edge replay` gives the committed reference events.

tests/data/reference/stop_sign_approach.json holds, for every event of `edge replay` on the shared
video/stop_sign_approach.mp4 with models/yolov8n.onnx (CPU provider, 5 fps, fixed session id and start time, so
ids do not depend on the file's dates), its detection_id, frame_number, class_name, bbox and confidence. A
difference means detection changed: decoding, frame sampling, letterbox, output decoding, NMS, ids or rounding.
When the change is intended, regenerate the reference from the repository root and commit it with the change:

    EDGE_TEST_DATA=../shared/data .venv/bin/python -m tests.integration.test_replay_golden

(it runs the same replay as the test and rewrites the file; the shared data stays read-only).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, data_root
from tests.integration.command_helpers import edge_env

REFERENCE = REPO / "tests" / "data" / "reference" / "stop_sign_approach.json"
RUN = {  # what the reference was made with (recorded in it: a mismatch asks for a regeneration)
    "video": "video/stop_sign_approach.mp4",
    "model": "models/yolov8n.onnx",
    "session_id": "golden-stop-sign",
    "start_time": "2021-12-08T10:07:16Z",
    "fps": 5,
    "providers": ["cpu"],
}
KEPT = ("detection_id", "frame_number", "class_name", "bbox", "confidence")
# Events round boxes to 0.01 px: a model output that moves by less than 1e-3 (another CPU's kernels) can still
# move a rounded value by one step, so boxes get one step more than that.
BOX_TOL = 0.01 + 1e-3
CONF_TOL = 1e-3


def replay(data: Path, workdir: Path) -> list[dict]:
    """The reference's fields of every event of the golden replay, in output order."""
    config = workdir / "cpu.toml"
    config.write_text(f"[detector]\nproviders = {json.dumps(RUN['providers'])}\n")
    out = workdir / "events.jsonl"
    cmd = [sys.executable, "-m", "edge", "replay", str(data / RUN["video"]), "--model", str(data / RUN["model"]),
           "--config", str(config), "--session", RUN["session_id"], "--start-time", RUN["start_time"],
           "--fps", str(RUN["fps"]), "--out", str(out), "--quiet", "--state-dir", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=edge_env())
    assert proc.returncode == 0, f"replay should succeed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    events = [json.loads(line) for line in out.read_text().splitlines()]
    return [{k: [round(x, 3) for x in e[k]] if k == "bbox" else e[k] for k in KEPT} for e in events]


def first_difference(got: list[dict], want: list[dict]) -> str | None:
    """Where a fresh replay first differs from the reference (ids, frames, classes exactly; boxes within
    BOX_TOL, confidence within CONF_TOL), or None."""
    for i, (g, w) in enumerate(zip(got, want)):
        where = f"event {i} (frame {w['frame_number']}, reference id {w['detection_id']})"
        for key in ("detection_id", "frame_number", "class_name"):
            if g[key] != w[key]:
                return f"{where}: {key} {g[key]!r}, reference {w[key]!r}"
        for j, (a, b) in enumerate(zip(g["bbox"], w["bbox"])):
            if abs(a - b) > BOX_TOL:
                return f"{where}: bbox[{j}] {a}, reference {b} (bbox {g['bbox']} vs {w['bbox']}, tolerance {BOX_TOL})"
        if abs(g["confidence"] - w["confidence"]) > CONF_TOL:
            return f"{where}: confidence {g['confidence']}, reference {w['confidence']} (tolerance {CONF_TOL})"
    if len(got) != len(want):
        extra, side = (got[len(want)], "replay") if len(got) > len(want) else (want[len(got)], "reference")
        return f"{len(got)} events, reference {len(want)}; first one only in the {side}: {extra}"
    return None


def write_reference(data: Path) -> int:
    """Rewrite REFERENCE from a fresh replay (one event per line, for readable diffs); the number of events."""
    with tempfile.TemporaryDirectory() as tmp:
        events = replay(data, Path(tmp))
    head = {"about": "edge replay of the shared drive: see tests/integration/test_replay_golden.py", **RUN}
    text = json.dumps(head, indent=2)[:-2] + ',\n  "events": [\n'
    text += ",\n".join("    " + json.dumps(e) for e in events) + "\n  ]\n}\n"
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(text)
    return len(events)


@pytest.mark.slow
def test_replay_of_the_stop_sign_drive_equals_the_reference(tmp_path: Path):
    data = data_root()
    missing = [RUN[k] for k in ("video", "model") if not (data / RUN[k]).is_file()]
    if missing:
        pytest.skip(f"shared test data not found under {data}: {missing} (set EDGE_TEST_DATA)")
    # given the committed reference, made with the same arguments
    reference = json.loads(REFERENCE.read_text())
    assert {k: reference.get(k) for k in RUN} == RUN, \
        f"the reference was made with other arguments: regenerate it (see this module's docstring): {REFERENCE}"
    assert reference["events"], "the reference holds events"
    # when the drive is replayed now
    got = replay(data, tmp_path)
    # then the events are the reference's: same ids, frames and classes, boxes and confidences within tolerance
    diff = first_difference(got, reference["events"])
    assert diff is None, f"replay differs from {REFERENCE.relative_to(REPO)} (regenerate if intended): {diff}"


if __name__ == "__main__":
    root = data_root()
    print(f"wrote {write_reference(root)} events to {REFERENCE} from {root}")
