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
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self.url
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"app did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
