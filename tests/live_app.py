"""`python app.py` started as the README says, on a free localhost port, for API and browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], env: dict, url: str, log: Path, timeout_s: float = 180.0) -> subprocess.Popen:
    """`python app.py ARGS` in the repository with `env`, logging to `log`; returns once `url` answers."""
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "app.py", *args], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as page:
                if page.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            terminate(proc)
            raise AssertionError(f"app did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def terminate(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LiveApp:
    """`python app.py` on a free localhost port with its own CRASHCHAT_DB; can be restarted."""

    def __init__(self, db: Path, split_dir: Path, env: dict | None = None) -> None:
        self.db, self.split_dir, self.proc, self.url = db, split_dir, None, ""
        self.extra_env = dict(env or {})
        self.uploads = db.parent / "gradio-tmp"

    def start(self) -> str:
        port = free_port()
        env = dict(os.environ, CRASHCHAT_DB=str(self.db), CRASHCHAT_SPLIT_DIR=str(self.split_dir),
                   GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(self.uploads),
                   CRASHCHAT_ADMIN_TOKEN="live-token")
        env.pop("CRASHCHAT_RESULTS_REPO", None)
        env.update(self.extra_env)
        self.log = self.db.parent / f"app-{port}.log"
        self.url = f"http://127.0.0.1:{port}/"
        self.proc = launch(["--port", str(port)], env, self.url, self.log)
        return self.url

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
