"""A folder of still images (or one image file), one frame per image in name order; undecodable ones skipped."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2

from edge.sources.base import SourceError, SourceStats
from edge.types import Frame

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _natural_key(name: str) -> list[tuple[int, int | str]]:
    """Name order in which frame2 comes before frame10."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name) if part]


def list_images(folder: Path) -> list[Path]:
    """Image files of `folder` in natural name order; other files are skipped with one warning each."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: _natural_key(p.name))
    except OSError as exc:
        raise SourceError(f"image folder {folder}: cannot list: {exc.strerror}") from None
    images = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # hidden files: editor backups, .DS_Store
        if entry.is_dir():
            log.debug("image folder %s: subfolder %s not read", folder, entry.name)
        elif is_image_path(entry):
            images.append(entry)
        else:
            log.warning("image folder %s: skipping %s: not an image (expected one of %s)", folder, entry.name,
                        ", ".join(sorted(IMAGE_EXTENSIONS)))
    return images


class ImageFolderSource:
    """Every image of a folder once, in name order; `Frame.path` names the file (its EXIF is read later)."""

    live = False

    def __init__(self, path: str | os.PathLike[str], *, inference_fps: float):
        if inference_fps <= 0:
            raise ValueError(f"inference_fps must be > 0, got {inference_fps}")
        self.path = Path(path)
        self.inference_fps = float(inference_fps)
        self.stats = SourceStats()
        if self.path.is_dir():
            self.files = list_images(self.path)
            if not self.files:
                raise SourceError(f"image folder {self.path}: no images in it (looked for "
                                  f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
        elif self.path.is_file() and is_image_path(self.path):
            self.files = [self.path]
        elif not self.path.exists():
            raise SourceError(f"image folder {self.path}: no such file or directory")
        else:
            raise SourceError(f"image folder {self.path}: neither a folder nor an image file")
        self.name = self.path.name

    def expected_frames(self) -> int:
        return len(self.files)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """One frame per image: index = position in the listing, timestamp = index / inference_fps,
        captured_at = the file's modification time."""
        for index, file in enumerate(self.files):
            if stop.is_set():
                return
            self.stats.frames_read += 1
            try:
                mtime = file.stat().st_mtime
            except OSError as exc:
                self.stats.corrupt_frames += 1
                log.warning("image folder %s: %s unreadable (%s); skipped", self.path, file.name, exc.strerror)
                continue
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                self.stats.corrupt_frames += 1
                log.warning("image folder %s: %s (image %d) does not decode; skipped", self.path, file.name, index)
                continue
            self.stats.frames_emitted += 1
            yield Frame(index=index, timestamp_sec=index / self.inference_fps, captured_at=mtime, image=image,
                        source=self.name, path=str(file))
        log.info("image folder %s: %d images, %d decoded", self.path, len(self.files), self.stats.frames_emitted)

    def close(self) -> None:
        """Nothing held open between images."""
