"""CrashChat app: `python app.py [--model NAME] [--host HOST] [--port PORT]`.

Two tabs assembled from library code: the chat tab (`crashchat/chat/`) and the leaderboard tab
(`leaderboard/ui.py`). Nothing heavy happens at import: Gradio and the tabs load when the app is
built (so `--help` answers at once), the model on first use.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

# Gradio's cache (uploads, files sent to pages) is Gradio's: the app deletes nothing in it. Its
# files go an hour after they were written (or last handed out), checked every 15 minutes, so an
# upload nobody submits does not stay on disk for a day.
DELETE_CACHE = (900, 3600)
QUEUE_SIZE = 100
"""Events waiting in the queue, all users together (`CRASHCHAT_QUEUE_SIZE`); beyond it a new
event is refused at once ("queue is full") instead of waiting behind minutes of work."""
QUEUE_POLL_S = {"sleep_when_free": 0.02, "progress_update_sleep_when_free": 0.05}
"""How often Gradio's queue looks for new events, and for progress to send, while it waits. Gradio
6 looks every 1 ms and 10 ms off Windows (0.05 s and 0.1 s on it), which keeps a tenth of a core
busy in an app nobody is using (a Space's shared CPU; every app the tests start). Every 20 ms is
still instant to a person. Gradio has no setting for these: `quiet_queue` sets its attributes."""


def build_app(model: str | None = None) -> gr.Blocks:
    import gradio as gr

    from crashchat.chat import layout as chat_ui
    from leaderboard import ui as board_ui

    with gr.Blocks(title="CrashChat", delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            "# CrashChat\nMultitask traffic-crash video analysis "
            "([paper](https://arxiv.org/abs/2512.18878)) and the CrashChat benchmark."
        )
        with gr.Tab("Chat", id="chat"):
            chat_ui.build(model=model)
        with gr.Tab("Leaderboard", id="leaderboard"):
            board_ui.build()
    return demo


def quiet_queue(demo: gr.Blocks) -> None:
    """`QUEUE_POLL_S` on the app's queue (after `demo.queue()`); an attribute this Gradio lacks is
    left alone (`tests/test_ui.py` checks that the pinned Gradio has both)."""
    queue = demo._queue  # the queue `demo.queue()` made (private: Gradio offers no setting)
    for name, seconds in QUEUE_POLL_S.items():
        if hasattr(queue, name):
            setattr(queue, name, seconds)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("CRASHCHAT_MODEL"),
                        help="crashchat (default), videollama3 or tiny-random; env CRASHCHAT_MODEL")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, help="default: env GRADIO_SERVER_PORT, else 7860")
    args = parser.parse_args(argv)
    from crashchat.settings import SettingError, from_env, whole
    from leaderboard.store import StoreError

    try:  # every setting is read here, before the first user: a bad one is one line, not a traceback
        # the port before Gradio's import, which reads GRADIO_SERVER_PORT itself (and fails with a traceback)
        env_port = from_env("GRADIO_SERVER_PORT", 7860, whole(1, 65535), "a port number (1 to 65535)")
        queue_size = from_env("CRASHCHAT_QUEUE_SIZE", QUEUE_SIZE, whole(1), "a whole number of events (1 or more)")
        demo = build_app(model=args.model)
    except (SettingError, StoreError) as exc:  # StoreError: CRASHCHAT_DB is not a usable database
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from crashchat.chat import layout as chat_ui  # built above; here for its upload limit

    demo.queue(default_concurrency_limit=1, max_size=queue_size)
    quiet_queue(demo)
    # uploads over the video size limit are refused by Gradio before they are stored
    demo.launch(server_name=args.host, server_port=args.port or env_port, max_file_size=chat_ui.max_upload_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
