"""`edge run`: the long-running service's main loop: the live pipeline, delivery, status, watchdog and reload.

Built by the composition root (edge.app); signals are the CLI's: `Daemon.run(stop, reload)` ends when `stop`
is set and re-reads the configuration when `reload` is, so a test runs the real loop in a thread."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from edge.config import Config, ConfigError, load_config, reloadable_fields
from edge.delivery import Delivery
from edge.detect import ObjectDetector
from edge.latency import LatencyBudget, LatencyReport, StageLatencies
from edge.native import native_output_counts
from edge.pipeline import Pipeline, StageFailed
from edge.sources import FrameSource
from edge.status import Snapshot

log = logging.getLogger(__name__)

STATUS_EVERY_S = 5.0
MAX_STAGE_RESTARTS = 5  # a minute, then exit non-zero and let systemd restart the whole service
PROGRESS_GRACE_S = 30.0  # no frame for this long while the source claims to be healthy = hung
STOP_DRAIN_S = 20.0  # at a stop, what the flusher may still deliver; the rest stays in the spool


# What SIGHUP applies without a restart, by section (marked on the fields in edge.config); every other key is
# named as needing a restart.
RELOADABLE: dict[str, tuple[str, ...]] = reloadable_fields()
SECTIONS = tuple(Config.model_fields)


class Daemon:
    """The service. `run(stop, reload)` returns the process exit code."""

    def __init__(self, cfg: Config, config_path: Path | None, log_context=None,  # noqa: ANN001 - logs.LogContext
                 *, session_id: str | None = None):
        self.cfg = cfg
        self.session_id = session_id  # known before logging starts (cmd_run), so every record carries it
        self.config_path = config_path
        self.log_context = log_context
        self.latency = StageLatencies(cfg.latency.window_s)  # every stage's, from capture to the broker's ack
        self.budget = LatencyBudget(cfg.latency.budget_ms)

    def _apply_reload(self, detector: ObjectDetector, source: FrameSource) -> None:
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
        self.budget.budget_ms = new.latency.budget_ms
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

    def run(self, stop: threading.Event, reload: threading.Event | None = None) -> int:
        """Until `stop` (or a stage gives up): returns 0 after a clean stop, 1 when the pipeline failed."""
        from edge.app import build_detection, open_detector
        from edge.service import Notifier

        notifier = Notifier()
        # a TensorRT engine build can take many minutes on a Jetson: keep extending the start timeout meanwhile
        with notifier.extending_timeout(60, status="loading the model (a TensorRT engine build can take minutes)"):
            detector = open_detector(self.cfg)
        with Delivery.start(self.cfg, latency=self.latency) as delivery:
            sink = delivery.sink(live=True)
            with build_detection(self.cfg, sink.write, detector=detector, session_id=self.session_id,
                                 max_restarts=MAX_STAGE_RESTARTS, log_events=True, latency=self.latency,
                                 objects=sink.write_objects) as run:
                if self.log_context is not None:
                    self.log_context.update(session_id=run.session_id)
                return self._serve(run, delivery, notifier, stop, reload or threading.Event())

    def _serve(self, run, delivery: Delivery, notifier, stop: threading.Event,  # noqa: ANN001 - app.DetectionRun, Notifier
               reload: threading.Event) -> int:
        from edge.logs import flush_log_summaries
        from edge.status import StatusWriter

        cfg, pipeline, source = self.cfg, run.pipeline, run.source
        status = StatusWriter(Path(cfg.state.runtime_dir), prometheus_path=cfg.state.prometheus_textfile or None)
        result: list[BaseException] = []

        def run_pipeline() -> None:
            try:
                pipeline.run(stop)
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                result.append(exc)

        runner = threading.Thread(target=run_pipeline, name="edge-pipeline", daemon=True)
        runner.start()
        self._start_watchdog(notifier, pipeline, source, delivery, stop)
        notifier.ready()
        log.info("edge-detector running: vehicle %s, camera %s, session %s, source %s, spool %s, broker %s",
                 cfg.vehicle.vehicle_id, cfg.vehicle.camera_id, run.session_id, source.name, cfg.spool_path(),
                 cfg.kafka.bootstrap_servers or "none (spool only)")
        last_status = 0.0
        latency = LatencyReport(self.latency, self.budget, cfg.latency.report_interval_s)
        while runner.is_alive():
            runner.join(0.5)
            if reload.is_set():
                reload.clear()
                self._apply_reload(run.detector, source)
            now = time.monotonic()
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                snapshot = self._snapshot(pipeline, source, delivery, latency.update(now))
                notifier.status(snapshot.line())
                status.write(snapshot)
                flush_log_summaries()
        notifier.stopping()
        flush_log_summaries(force=True)
        drained = delivery.finish(drain_timeout=STOP_DRAIN_S)
        status.write(self._snapshot(pipeline, source, delivery, latency.update(time.monotonic(), final=True),
                                    state="stopped", drained=drained))
        if result:
            exc = result[0]
            if isinstance(exc, StageFailed):
                log.error("%s; exiting so that systemd restarts the service", exc)
            else:
                log.error("pipeline failed: %s: %s", type(exc).__name__, exc)
            return 1
        log.info("stopped cleanly: %d frames, %d detections", pipeline.stats.frames, pipeline.stats.detections)
        return 0

    @staticmethod
    def _start_watchdog(notifier, pipeline: Pipeline, source: FrameSource, delivery: Delivery,  # noqa: ANN001
                        stop: threading.Event) -> None:
        """WATCHDOG=1 only while frames move (or the source is reconnecting) and the flusher's loop turns."""
        from edge.service import watchdog_interval
        from edge.watchdog import Heartbeat, ProgressWatchdog

        interval = watchdog_interval()
        if not interval:
            return
        frames_hb, flusher_hb = Heartbeat("frames"), Heartbeat("flusher")
        last = {"frames": 0, "flusher": -1}

        def pipeline_progressing() -> bool:
            if pipeline.stats.frames != last["frames"]:
                last["frames"] = pipeline.stats.frames
                frames_hb.beat()
            # a source in an outage is legitimately idle: it is reconnecting, not hung
            return source.stats.in_outage or frames_hb.alive(PROGRESS_GRACE_S)

        def flusher_alive() -> bool:
            if delivery.flusher is None:
                return True
            if delivery.flusher.loops != last["flusher"]:
                last["flusher"] = delivery.flusher.loops
                flusher_hb.beat()
            return flusher_hb.alive(PROGRESS_GRACE_S)

        watchdog = ProgressWatchdog(notifier, interval, [pipeline_progressing, flusher_alive])
        threading.Thread(target=watchdog.run, args=(stop,), name="edge-watchdog", daemon=True).start()

    def _snapshot(self, pipeline: Pipeline, source: FrameSource, delivery: Delivery, stages: dict, *,
                  state: str = "running", drained: bool | None = None) -> Snapshot:
        return Snapshot.of(pipeline=pipeline.stats, source=source.stats, spool=delivery.stats(),
                           broker=delivery.broker_state(), delivery=delivery.metrics.snapshot(),
                           native=native_output_counts(), stages=stages, budget=self.budget,
                           state=state, drained=drained)  # type: ignore[arg-type]
