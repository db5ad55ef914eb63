"""A folder of still images (or one image file), one frame per image in name order; undecodable ones skipped."""

from __future__ import annotations

import calendar
import logging
import math
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.sources.base import SourceError, SourceStats
from edge.types import Frame

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _text(value: object) -> str:
    raw = value if isinstance(value, bytes) else str(value or "").encode()
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def _exif_time(date: str, hms: tuple[float, float, float], offset: str = "+00:00") -> float:
    """'YYYY:MM:DD' + (h, m, s) + '±HH:MM' → Unix seconds; ValueError if any part is not a date."""
    y, mo, d = (int(x) for x in date.replace("-", ":").split(":"))
    sign = -1 if offset.startswith("-") else 1
    oh, om = (int(x) for x in offset.lstrip("+-").split(":"))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and all(0 <= x < 61 for x in hms) and 0 <= oh < 15 and 0 <= om < 60):
        raise ValueError("not a date")
    return calendar.timegm((y, mo, d, 0, 0, 0)) + hms[0] * 3600 + hms[1] * 60 + hms[2] - sign * (oh * 3600 + om * 60)


def photo_time(photo: bytes | str | os.PathLike[str]) -> float | None:
    """When a photo was taken (Unix seconds) by its EXIF (read with piexif): DateTimeOriginal with its
    OffsetTimeOriginal, else the GPS date and time (UTC). None without them: a DateTimeOriginal without zone is
    some local time. Never raises: a photo without usable EXIF is dated by its file instead."""
    import piexif

    try:
        tags = piexif.load(photo if isinstance(photo, bytes) else str(photo))
    except Exception:  # noqa: BLE001 - piexif raises many types on malformed files (seen: struct.error, ValueError)
        return None
    exif, gps = tags.get("Exif") or {}, tags.get("GPS") or {}
    original = _text(exif.get(piexif.ExifIFD.DateTimeOriginal))
    offset = _text(exif.get(piexif.ExifIFD.OffsetTimeOriginal))
    try:
        if len(original) >= 19 and len(offset) == 6:
            return _exif_time(original[:10], tuple(float(x) for x in original[11:19].split(":")), offset)  # type: ignore[arg-type]
    except ValueError:
        pass
    try:
        hms = tuple(n / d for n, d in gps[piexif.GPSIFD.GPSTimeStamp])
        return _exif_time(_text(gps[piexif.GPSIFD.GPSDateStamp]), hms)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


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
        self._lock = threading.Lock()
        # timestamps advance by 1/inference_fps from (index, seconds); set_fps() moves this base so that they
        # keep increasing at the new spacing (without a change, index / inference_fps exactly as before)
        self._base: tuple[int, float] = (0, 0.0)
        self._next_index = 0
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

    def set_fps(self, fps: float) -> None:
        """Space the timestamps of the images still to come by 1/`fps` (every image is still read once)."""
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"inference_fps must be > 0, got {fps}")
        with self._lock:
            old = self.inference_fps
            self._base = (self._next_index, self._timestamp(self._next_index))
            self.inference_fps = float(fps)
        log.info("image folder %s: timestamps at %g fps (was %g)", self.path, fps, old)

    def _timestamp(self, index: int) -> float:
        base_index, base_t = self._base
        return base_t + (index - base_index) / self.inference_fps

    def expected_frames(self) -> int:
        return len(self.files)

    def frames(self, stop: threading.Event) -> Iterator[Frame]:
        """One frame per image: index = position in the listing, timestamp = index / inference_fps (the
        spacing changes where set_fps() was called), captured_at = when the photo was taken by its EXIF
        (photo_time), else the file's modification time (a copy's, maybe); source = folder/file name."""
        with self._lock:
            self._base, self._next_index = (0, 0.0), 0
        for index, file in enumerate(self.files):
            if stop.is_set():
                return
            with self._lock:
                timestamp = self._timestamp(index)
                self._next_index = index + 1
            self.stats.frames_read += 1
            try:
                mtime = file.stat().st_mtime
            except OSError as exc:
                self.stats.corrupt_frames += 1
                log.warning("image folder %s: %s unreadable (%s); skipped", self.path, file.name, exc.strerror)
                continue
            try:  # read once: the same bytes are decoded and searched for the photo's time
                data = file.read_bytes()
            except OSError as exc:
                self.stats.corrupt_frames += 1
                log.warning("image folder %s: %s unreadable (%s); skipped", self.path, file.name, exc.strerror)
                continue
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if image is None or image.size == 0:
                self.stats.corrupt_frames += 1
                log.warning("image folder %s: %s (image %d) does not decode; skipped", self.path, file.name, index)
                continue
            self.stats.frames_emitted += 1
            taken = photo_time(data)
            source = file.name if file == self.path else f"{self.name}/{file.name}"
            yield Frame(index=index, timestamp_sec=timestamp, captured_at=mtime if taken is None else taken,
                        image=image, source=source, path=str(file))
        log.info("image folder %s: %d images, %d decoded", self.path, len(self.files), self.stats.frames_emitted)

    def close(self) -> None:
        """Nothing held open between images."""
