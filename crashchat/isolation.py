"""Guarded decoding: run a video decoder in a fresh child process, with a timeout and a memory cap.

A decoder that crashes or hangs on a hostile file takes only the child down; the parent gets one
`VideoError` line naming the file. The frames come back over a dedicated pipe.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import pickle
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from crashchat.clip import Clip, VideoError

# A fresh interpreter (subprocess), not multiprocessing: spawn and forkserver re-import the
# caller's __main__ in the child (a Gradio app, or `<stdin>`, which fails), and plain fork is
# unsafe once torch threads or CUDA exist. The child imports only this module and the target's
# (`crashchat.video`); the frames come back over a dedicated pipe so that a library printing to
# stdout cannot corrupt them.
_CHILD_CODE = "import sys; from crashchat.isolation import _child_main; _child_main(int(sys.argv[1]))"


def _child_main(fd: int) -> None:
    """Entry point of the decoding child: (path, target, args, memory) pickled on stdin, answers on fd."""
    conn = multiprocessing.connection.Connection(fd)
    path, memory_bytes = "the video", None
    try:
        path, target, args, memory_bytes = pickle.load(sys.stdin.buffer)
        if memory_bytes:
            import resource

            # The decoders are loaded first, so the limit bounds decoding, not library loading.
            import av  # noqa: F401
            import av.subtitles.stream  # noqa: F401 - av imports it on the first open; under the cap
            # that import could fail to map the library (an ImportError, not a memory error)
            try:
                import decord  # noqa: F401
            except ImportError:
                pass  # load_video falls back to PyAV and says so in the clip's notes
            resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        clip = target(*args)
    except VideoError as exc:
        conn.send(("error", str(exc)))
    except MemoryError:
        conn.send(("error", f"{path}: decoding needs more than {memory_bytes / 1024**3:.1f} GiB of memory "
                            "(VideoLimits.max_memory_bytes)"))
    except BaseException:  # noqa: BLE001 - reported to the parent, which re-raises it
        conn.send(("crash", traceback.format_exc()))
    else:
        frames = np.ascontiguousarray(clip.frames)
        header = {k: getattr(clip, k) for k in Clip.__dataclass_fields__ if k != "frames"}
        conn.send(("ok", header, frames.shape, frames.dtype.str))
        conn.send_bytes(frames.reshape(-1))
    finally:
        conn.close()


def run_isolated(path: str | os.PathLike, timeout_s: float, target: Any, args: tuple,
                 memory_bytes: int | None = None) -> Clip:
    """Run ``target(*args) -> Clip`` in a child Python process; frames come back through a pipe.

    A timeout kills the child; a child that dies (segfault, abort, out of memory) or hangs
    becomes a `VideoError` naming the file. memory_bytes caps the child's address space. target must be picklable (a module-level function).
    POSIX only (the answer pipe is passed by file descriptor).
    """
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    read_fd, write_fd = os.pipe()
    deadline = time.monotonic() + timeout_s
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, str(write_fd)], pass_fds=(write_fd,),
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    finally:
        os.close(write_fd)  # ours must go, so that the child's death shows up as EOF
    receiver = multiprocessing.connection.Connection(read_fd)
    try:
        try:
            child.stdin.write(pickle.dumps((str(path), target, args, memory_bytes)))
            child.stdin.close()
        except BrokenPipeError:
            pass  # the child is already gone; the EOF below reports how
        if not receiver.poll(max(deadline - time.monotonic(), 0)):
            raise VideoError(f"{path}: decoding took longer than {timeout_s:g} s and was stopped")
        message = receiver.recv()
        if message[0] == "error":
            raise VideoError(message[1])
        if message[0] == "crash":
            raise RuntimeError(f"decoding {path} failed in the child process:\n{message[1]}")
        _, header, shape, dtype = message
        frames = np.empty(shape, dtype=np.dtype(dtype))
        if not receiver.poll(max(deadline - time.monotonic(), 0)):
            raise VideoError(f"{path}: decoding took longer than {timeout_s:g} s and was stopped")
        receiver.recv_bytes_into(frames.reshape(-1))
        return Clip(frames=frames, **header)
    except (EOFError, ConnectionError):
        try:
            code = child.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        raise VideoError(f"{path}: the decoder process died ({how})") from None
    finally:
        receiver.close()
        if child.poll() is None:
            child.kill()
        child.wait()

