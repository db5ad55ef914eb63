"""set_fps on the recording sources (a SIGHUP reload of `edge run` on a file or folder): the new rate from the next frame."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.sources import ImageFolderSource, VideoFileSource


def test_video_file_follows_the_new_rate_on_its_media_time_grid(data_dir: Path) -> None:
    # given the 17.5 fps clip replayed at 5 fps
    video = data_dir / "video" / "sf_dashcam_traffic_lights.mp4"
    src = VideoFileSource(video, inference_fps=5, start_time=0)
    frames = src.frames(threading.Event())
    before = list(itertools.islice(frames, 6))
    # when the rate drops to 2 fps between two frames
    src.set_fps(2)
    after = list(itertools.islice(frames, 6))
    frames.close()
    # then the frames after the change are those a replay at 2 fps chooses after the last 5 fps frame
    reference = VideoFileSource(video, inference_fps=2, start_time=0)
    expected = [f.index for f in itertools.islice(reference.frames(threading.Event()), 40)
                if f.timestamp_sec > before[-1].timestamp_sec][:6]
    assert [f.index for f in after] == expected, f"2 fps grid after the change: {[f.index for f in after]}"
    gaps = np.diff([f.timestamp_sec for f in after])
    assert np.all(np.abs(gaps - 0.5) < 1 / 17.5), f"about 0.5 s of media time between frames: {gaps}"
    assert src.expected_frames() == reference.expected_frames(), "the estimate follows the new rate"


def test_image_folder_spaces_the_following_timestamps_at_the_new_rate(tmp_path: Path) -> None:
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((8, 8, 3), i, np.uint8))
    src = ImageFolderSource(tmp_path, inference_fps=5)
    frames = src.frames(threading.Event())
    first = list(itertools.islice(frames, 3))
    src.set_fps(2)
    rest = list(frames)
    stamps = [f.timestamp_sec for f in first + rest]
    assert [f.index for f in first + rest] == list(range(6)), "every image still comes once, in order"
    assert stamps == pytest.approx([0.0, 0.2, 0.4, 0.6, 1.1, 1.6]), f"0.2 s apart, then 0.5 s: {stamps}"


@pytest.mark.parametrize("fps", [0, -2, float("nan")])
def test_recording_sources_reject_a_rate_that_is_not_positive(data_dir: Path, tmp_path: Path, fps: float) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    for src in (VideoFileSource(data_dir / "video" / "sf_dashcam_traffic_lights.mp4", inference_fps=5),
                ImageFolderSource(tmp_path, inference_fps=5)):
        with pytest.raises(ValueError, match="inference_fps"):
            src.set_fps(fps)
        assert src.inference_fps == 5, f"{src.name}: the running rate is kept"
