"""Start and stop a real ``mlflow server`` for the test suite.

One server per test run (see the ``mlflow_server`` fixture in ``conftest.py``): a SQLite backend store
and a local artifact root in a temporary directory, bound to 127.0.0.1 on a free port, one worker.
Starting takes about 14 s on two cores, almost all of it MLflow's imports and database migrations.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

START_DEADLINE_SECONDS = 300.0   # a loaded 2-core machine has needed over 80 s


class ServerDidNotStart(RuntimeError):
    """The server exited or did not answer ``/health`` before the deadline."""


def mlflow_server_available() -> str | None:
    """``None`` when the full ``mlflow`` package (with its server) is installed, else why not."""
    if importlib.util.find_spec("mlflow") is None:
        return "mlflow is not installed"
    if importlib.util.find_spec("mlflow.server") is None or importlib.util.find_spec("flask") is None:
        return "only mlflow-skinny is installed; the server needs the full `mlflow` package"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class MlflowServer:
    """A running ``mlflow server`` process and where its state lives."""

    url: str
    db_path: Path
    artifact_root: Path
    process: subprocess.Popen
    log_path: Path
    started_in: float = 0.0
    _log: object = field(default=None, repr=False)

    @property
    def backend_uri(self) -> str:
        return f"sqlite:///{self.db_path}"

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's combined output, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server's process group, killing it if it does not exit within ``grace``."""
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait(grace)
        if self._log is not None:
            self._log.close()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    """Signal the process group the server leads (its uvicorn/gunicorn workers too)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _mlflow_command() -> list[str]:
    """The ``mlflow`` console script next to this interpreter, else ``python -m mlflow``."""
    script = Path(sys.executable).with_name("mlflow")
    if script.exists():
        return [str(script)]
    found = shutil.which("mlflow")
    return [found] if found else [sys.executable, "-m", "mlflow"]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow_server(workdir: Path, *, deadline: float = START_DEADLINE_SECONDS) -> MlflowServer:
    """Start ``mlflow server`` with its state under ``workdir`` and wait until ``/health`` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db_path = workdir / "mlflow.db"
    artifacts = workdir / "artifacts"
    log_path = workdir / "server.log"
    command = _mlflow_command() + [
        "server", "--backend-store-uri", f"sqlite:///{db_path}",
        "--default-artifact-root", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    log = open(log_path, "wb")
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=workdir, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", db_path, artifacts, process, log_path, _log=log)
    _wait_healthy(server, started + deadline)
    server.started_in = time.monotonic() - started
    return server


def _wait_healthy(server: MlflowServer, until: float) -> None:
    """Poll ``/health`` until it answers; stop the server and raise if it dies or the deadline passes."""
    while time.monotonic() < until:
        if server.process.poll() is not None:
            server.stop()
            raise ServerDidNotStart(f"mlflow server exited with {server.process.returncode}:\n"
                                    f"{server.log_tail()}")
        if _healthy(server.url):
            return
        time.sleep(0.25)
    server.stop()
    raise ServerDidNotStart(f"mlflow server did not answer {server.url}/health in time:\n{server.log_tail()}")


if __name__ == "__main__":  # pragma: no cover - manual timing: python tests/mlflow_server.py
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        srv = start_mlflow_server(Path(tmp))
        print(f"{srv.url} healthy after {srv.started_in:.1f} s")
        srv.stop()
