"""`edge run` knows its session before it logs anything: the first record already carries SESSION_ID."""

from __future__ import annotations

from pathlib import Path

from edge import cli, logs, native
from edge.daemon import Daemon


def test_session_id_is_in_the_logging_context_from_the_start(tmp_path: Path, monkeypatch, restore_logging) -> None:
    cfg = tmp_path / "edge.toml"
    cfg.write_text('[vehicle]\nvehicle_id = "veh-7"\n[source]\nuri = "http://127.0.0.1:9/live.ts"\n')
    seen: dict[str, object] = {}
    real_setup = logs.setup_logging

    def setup_logging(level, **kw):  # noqa: ANN001, ANN202 - records what cmd_run passes
        seen["logging"] = kw
        return real_setup(level, **kw)

    def run(daemon: Daemon, *_events) -> int:  # noqa: ANN002 - stop and reload
        seen["daemon"] = daemon.session_id
        return 0

    monkeypatch.setattr(logs, "setup_logging", setup_logging)
    monkeypatch.setattr(Daemon, "run", run)
    monkeypatch.setattr(native, "quiet_native_libraries", lambda *a, **kw: None)  # keep this process's levels
    assert cli.main(["run", "--config", str(cfg)]) == 0, "the run command with a stand-in daemon"
    session = seen["logging"]["session_id"]
    assert session and seen["logging"]["vehicle_id"] == "veh-7", f"logging starts with the session: {seen}"
    assert seen["daemon"] == session, f"the daemon uses the session the log context has: {seen}"
