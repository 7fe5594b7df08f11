"""Start the Streamlit server for the web app as a child process.

The model and options reach the page through environment variables (see
:class:`~galaxymorph.app.core.AppSettings`); Streamlit settings come from ``config.toml`` beside
this file plus explicit flags, so the upload limit, address and telemetry are never left to a
user's global Streamlit configuration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

from galaxymorph.app.core import AppSettings
from galaxymorph.processes import die_with_parent

#: Signals that stop the app (a service manager, a closed terminal): passed on to the server so
#: that it frees its port instead of running on without us.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def app_script() -> Path:
    return Path(str(resources.files("galaxymorph.app") / "streamlit_app.py"))


def config_flags(path: Path | None = None) -> list[str]:
    """``config.toml`` as ``--section.key value`` flags (empty when it cannot be read)."""
    path = path or Path(str(resources.files("galaxymorph.app") / "config.toml"))
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    flags = []
    for section, values in data.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags.append(f"--{section}.{key}={text}")
    return flags


def build_command(host: str = "127.0.0.1", port: int = 8501, max_upload_mb: int = 20) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(app_script()), *config_flags(),
            f"--server.address={host}", f"--server.port={port}", "--server.headless=true",
            f"--server.maxUploadSize={max_upload_mb}", "--browser.gatherUsageStats=false"]


def child_env(settings: AppSettings) -> dict[str, str]:
    env = os.environ.copy()
    env.update(settings.to_env())
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return env


def resolve_ref(ref: str | None) -> str | None:
    """Absolute paths: the server process must find run folders whatever its folder."""
    if ref is None or ref == "default":
        return ref
    return str(Path(ref).expanduser().resolve())


def launch(settings: AppSettings, host: str = "127.0.0.1", port: int = 8501) -> int:
    """Run the server until it exits, Ctrl-C, SIGTERM or SIGHUP; returns its exit code (0 when stopped).

    The server gets the stop signal too, and dies with us even after a ``kill -9``
    (:func:`~galaxymorph.processes.die_with_parent`), so a stopped app never keeps its port.
    """
    cmd = build_command(host, port, settings.max_upload_mb)
    proc = subprocess.Popen(cmd, env=child_env(settings), preexec_fn=die_with_parent)
    stopped: list[int] = []

    def forward(signum: int, _frame) -> None:
        stopped.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {}
    if threading_is_main():
        previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        code = proc.wait()
        return 0 if stopped else code
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the server (if still running) and reap it; kill it when it does not stop in time."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
