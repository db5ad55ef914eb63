"""The sections of tracking and object geolocation: `[camera]` (the pinhole geometry) and `[tracking]`."""

from __future__ import annotations

from pydantic import Field

from edge.config.sections import Section


class CameraConfig(Section):
    hfov_deg: float = Field(
        90.0, gt=5, lt=180,
        description="horizontal field of view of the camera, degrees, for the bearing to an object (pinhole model); "
        "measure it, a dashcam's is 90–140: 1 degree wrong moves an object 30 m away by about 0.5 m")
    mount_yaw_deg: float = Field(
        0.0, ge=-180, le=360,
        description="where the camera looks relative to the vehicle's heading, degrees clockwise: 0 forward, "
        "180 a rear camera, 90 the right side")
    image_width: int = Field(
        0, ge=0, le=100_000,
        description="image width in pixels of CSV input, whose rows carry none (live and replay take it from the "
        "frames); 0: unknown, CSV objects then get no position (position_status no_image_width)")


class TrackingConfig(Section):
    enabled: bool = Field(True, description="track detections across frames: track_id on events, object records")
    max_age_s: float = Field(
        2.0, gt=0, le=3600,
        description="a track not seen for this long ends and its object record is made (a missed detection or two "
        "at 5 FPS does not split it)")
    min_hits: int = Field(
        2, ge=1, le=1000,
        description="frames an object must be seen in to get an object record (a one-frame false positive gets none; "
        "its events keep their track_id)")
    high_confidence: float = Field(
        0.5, ge=0, le=1,
        description="detections at least this confident are matched first; weaker ones only extend tracks left "
        "unmatched (ByteTrack's two stages)")
