"""`edge run`: the long-running service: live pipeline + spool + flusher + GPS, systemd notify/watchdog, signals."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

from edge.buffers import BoundedQueue
from edge.config import Config, ConfigError, load_config
from edge.delivery import Delivery
from edge.native import native_output_counts
from edge.pipeline import Pipeline, StageFailed
from edge.types import Frame

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0
MAX_STAGE_RESTARTS = 5  # a minute, then exit non-zero and let systemd restart the whole service
PROGRESS_GRACE_S = 30.0  # no frame for this long while the source claims to be healthy = hung


# What SIGHUP applies without a restart, by section; every other key is named as needing a restart.
RELOADABLE: dict[str, tuple[str, ...]] = {
    "log": ("level",),
    "detector": ("confidence", "iou", "classes"),
    "source": ("inference_fps",),
}
SECTIONS = ("vehicle", "source", "detector", "state", "spool", "kafka", "gps", "log")


class Daemon:
    """Composition root of the service. `run()` returns the process exit code."""

    def __init__(self, cfg: Config, config_path: Path | None, log_context=None,  # noqa: ANN001 - service.LogContext
                 *, session_id: str | None = None):
        self.cfg = cfg
        self.session_id = session_id  # known before logging starts (cmd_run), so every record carries it
        self.config_path = config_path
        self.log_context = log_context
        self.stop = threading.Event()
        self._reload = threading.Event()

    # -- signals -----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        def on_stop(signum, _frame):  # noqa: ANN001
            log.info("received %s: stopping capture, finishing frames in flight, draining the spool",
                     signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def _apply_reload(self, detector, source) -> None:  # noqa: ANN001
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            for key, msg in exc.problems:
                log.error("reload rejected: %s: %s: %s (keeping the running configuration)", exc.origin, key, msg)
            return
        changed = {  # key -> (running value, new value)
            f"{section}.{key}": (getattr(getattr(self.cfg, section), key), getattr(getattr(new, section), key))
            for section, keys in RELOADABLE.items() for key in keys
            if getattr(getattr(self.cfg, section), key) != getattr(getattr(new, section), key)
        }
        try:
            detector.set_thresholds(new.detector.confidence, new.detector.iou, list(new.detector.classes))
        except Exception as exc:  # noqa: BLE001 - a bad class list must not kill the service
            log.error("reload rejected: detector.classes: %s", exc)
            return
        logging.getLogger().setLevel(new.log.level)
        if "source.inference_fps" in changed:  # (validated > 0: set_fps cannot refuse it)
            source.set_fps(new.source.inference_fps)  # the next frame is sampled at the new rate
        restart_needed = [
            section for section in SECTIONS
            if getattr(self.cfg, section).model_dump(exclude=set(RELOADABLE.get(section, ())))
            != getattr(new, section).model_dump(exclude=set(RELOADABLE.get(section, ())))
        ]
        log.info("reloaded %s: applied %s; needs a restart to apply: %s", self.config_path or "<defaults>",
                 ", ".join(f"{key} {old!r} → {value!r}" for key, (old, value) in changed.items()) or "nothing",
                 ", ".join(restart_needed) or "nothing")
        # what was applied is now the running configuration, so the next reload compares against it
        self.cfg = self.cfg.model_copy(update={
            section: getattr(self.cfg, section).model_copy(update={k: getattr(getattr(new, section), k) for k in keys})
            for section, keys in RELOADABLE.items()
        })

    # -- main ----------------------------------------------------------------------------------

    def run(self) -> int:
        from edge.app import open_detector, session_for
        from edge.gps import make_provider
        from edge.service import Notifier, flush_log_summaries, watchdog_interval
        from edge.sources import Capture, open_source
        from edge.status import StatusWriter
        from edge.watchdog import Heartbeat, ProgressWatchdog

        cfg = self.cfg
        notifier = Notifier()
        self._install_signals()
        # a TensorRT engine build can take many minutes on a Jetson: keep extending the start timeout meanwhile
        with notifier.extending_timeout(60, status="loading the model (a TensorRT engine build can take minutes)"):
            detector = open_detector(cfg)
        delivery = Delivery.start(cfg)
        gps = make_provider(cfg.gps)
        gps.start()
        source = open_source(cfg.source)
        session_id = self.session_id or session_for(cfg, cfg.source.uri, None)
        if self.log_context is not None:
            self.log_context.update(session_id=session_id)
        frames: BoundedQueue[Frame] = BoundedQueue(cfg.source.queue_size, "drop_oldest" if source.live else "block")
        pipeline = Pipeline(
            Capture(source, frames), frames, detector, delivery.sink(live=source.live).write,
            vehicle_id=cfg.vehicle.vehicle_id, camera_id=cfg.vehicle.camera_id, session_id=session_id,
            gps=gps, max_restarts=MAX_STAGE_RESTARTS, log_events=True,
        )
        status = StatusWriter(Path(cfg.state.runtime_dir), prometheus_path=cfg.state.prometheus_textfile or None)
        frames_hb = Heartbeat()
        flusher_hb = Heartbeat()
        last_frames = [0]

        def pipeline_progressing() -> bool:
            if pipeline.stats.frames != last_frames[0]:
                last_frames[0] = pipeline.stats.frames
                frames_hb.beat()
            # a source in an outage is legitimately idle: it is reconnecting, not hung
            in_outage = getattr(source.stats, "in_outage", False)
            return in_outage or frames_hb.alive(PROGRESS_GRACE_S)

        last_loops = [-1]

        def flusher_alive() -> bool:
            if delivery.flusher is None:
                return True
            if delivery.flusher.loops != last_loops[0]:
                last_loops[0] = delivery.flusher.loops
                flusher_hb.beat()
            return flusher_hb.alive(PROGRESS_GRACE_S)

        interval = watchdog_interval()
        watchdog = ProgressWatchdog(notifier, interval, [pipeline_progressing, flusher_alive]) if interval else None
        result: list[BaseException] = []

        def run_pipeline() -> None:
            try:
                pipeline.run(self.stop)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                result.append(exc)

        runner = threading.Thread(target=run_pipeline, name="edge-pipeline", daemon=True)
        runner.start()
        if watchdog is not None:
            threading.Thread(target=watchdog.run, args=(self.stop,), name="edge-watchdog", daemon=True).start()
        notifier.ready()
        log.info("edge-detector running: vehicle %s, camera %s, session %s, source %s, spool %s, broker %s",
                 cfg.vehicle.vehicle_id, cfg.vehicle.camera_id, session_id, source.name, cfg.spool_path(),
                 cfg.kafka.bootstrap_servers or "none (spool only)")
        last_status = 0.0
        while runner.is_alive():
            runner.join(0.5)
            if self._reload.is_set():
                self._reload.clear()
                self._apply_reload(detector, source)
            now = time.monotonic()
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                snapshot = self._snapshot(pipeline, source, delivery, gps)
                notifier.status(self._status_line(snapshot))
                status.write(snapshot)
                flush_log_summaries()
        notifier.stopping()
        flush_log_summaries(force=True)
        stop_budget = 20.0
        drained = delivery.finish(drain_timeout=stop_budget)
        gps.close()
        final = self._snapshot(pipeline, source, delivery, gps, spool_stats=delivery.final_stats)
        status.write(final | {"state": "stopped", "drained": drained})
        if result:
            exc = result[0]
            if isinstance(exc, StageFailed):
                log.error("%s; exiting so that systemd restarts the service", exc)
                return 1
            log.error("pipeline failed: %s: %s", type(exc).__name__, exc)
            return 1
        log.info("stopped cleanly: %d frames, %d detections", pipeline.stats.frames, pipeline.stats.detections)
        return 0

    # -- status ------------------------------------------------------------------------------------

    @staticmethod
    def _snapshot(pipeline, source, delivery, gps, spool_stats=None) -> dict:  # noqa: ANN001
        st = pipeline.stats
        sp = spool_stats or delivery.spool.stats()
        m = delivery.metrics.snapshot()
        fix = st.last_fix
        return {
            "state": "running",
            "fps": round(st.fps, 2),
            "frames": st.frames,
            "frames_dropped": getattr(source.stats, "dropped", 0),
            "detections": st.detections,
            "spool_depth": sp.depth,
            "spool_bytes": sp.bytes,
            "spool_oldest_age_s": sp.oldest_age_s,
            "dead_letters": sp.dead,
            "broker": "none" if delivery.flusher is None else ("connected" if delivery.flusher.connected else "unreachable"),
            "acked": m.get("acked", 0),
            "sent": m.get("sent", 0),
            "failed": m.get("failed", 0),
            "pending": m.get("pending", 0),
            "dead_lettered": m.get("dead_lettered", 0),
            "producer_recreated": m.get("producer_recreated", 0),
            "evicted": sp.evicted_total,
            "drain_rate_per_s": m.get("drain_rate_per_s"),
            "latency_p50_ms": m.get("latency_p50_ms"),
            "latency_p99_ms": m.get("latency_p99_ms"),
            "gps": None if fix is None else {"status": fix.status, "lat": fix.lat, "lon": fix.lon, "source": fix.source},
            **native_output_counts(),  # native_log_lines, native_log_dropped: FFmpeg/OpenCV/onnxruntime output
        }

    @staticmethod
    def _status_line(s: dict) -> str:
        gps = s["gps"]["status"] if s.get("gps") else "n/a"
        return (f"{s['fps']:.1f} fps, {s['detections']} detections, spool {s['spool_depth']} "
                f"(dead {s['dead_letters']}), broker {s['broker']}, gps {gps}")
