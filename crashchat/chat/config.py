"""`TabConfig`: the chat tab's settings, from `app.py`'s flags and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from crashchat.settings import SettingError, flag, from_env, positive, whole

if TYPE_CHECKING:
    from crashchat.video import VideoLimits

MODEL_ENV = "CRASHCHAT_MODEL"
TIME_LIMIT_ENV = "CRASHCHAT_TIME_LIMIT_S"
MAX_TOKENS_ENV = "CRASHCHAT_MAX_NEW_TOKENS"
GUIDED_ENV = "CRASHCHAT_GUIDED"
EXAMPLES_ENV = "CRASHCHAT_EXAMPLES_DIR"

APP_MAX_NEW_TOKENS = 256
"""The app's answer length for real models: lower than the authors' 2048 so that it answers in seconds."""


@dataclass(frozen=True)
class TabConfig:
    """Settings of the chat tab (the app's flags and environment end up here)."""

    model: str = "crashchat"
    """`crashchat`, `videollama3` or `tiny-random` (see `crashchat.loading.ModelConfig`)."""
    time_limit_s: float = 300.0
    """A request (one Analyze, one chat answer) stops after this many seconds, with a message."""
    max_new_tokens: int | None = None
    """Answer length limit per task and per chat answer. None: the model's default
    (`crashchat.tiny.generation_defaults`: 48 for `tiny-random`, as on the command line), else
    `APP_MAX_NEW_TOKENS`; the model status line says which."""
    guided: bool | None = None
    """Format-guided decoding (`crashchat.guided`) for recognition and the two localizations, in
    Analyze and their task buttons. None: the model's default, as on the command line
    (`crashchat.tiny.generation_defaults`: on for `tiny-random`, whose random answers then still
    parse, so a CPU demo shows the verdict, the timeline and the key frames), else off (real
    models' answers are shown as they come)."""
    isolate: bool = True
    """Decode uploads in a child process, so a hostile file cannot crash or hang the app."""
    limits: VideoLimits | None = None
    """Upload limits (size, duration, resolution); None: `crashchat.video.VideoLimits()`."""
    examples_dir: Path | None = None
    """Where the synthetic example clips are written; None: `$CRASHCHAT_EXAMPLES_DIR` or the cache."""

    def __post_init__(self):
        from crashchat.loading import MODEL_NAMES, static_cache_allowed

        if self.model not in MODEL_NAMES:
            raise SettingError(f"--model / {MODEL_ENV}: unknown model {self.model!r}; "
                               f"choose from {', '.join(MODEL_NAMES)}")
        static_cache_allowed()  # read when the model decodes; a bad value stops the app at start
        if not self.time_limit_s > 0:
            raise SettingError(f"{TIME_LIMIT_ENV} must be a positive number of seconds, got {self.time_limit_s!r}")
        from crashchat.tiny import generation_defaults

        defaults = {"max_new_tokens": APP_MAX_NEW_TOKENS, "guided": False, **generation_defaults(self.model)}
        for name, value in defaults.items():  # frozen: the per-model defaults are filled in once, here
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if not self.max_new_tokens >= 1:
            raise SettingError(f"{MAX_TOKENS_ENV} must be at least 1, got {self.max_new_tokens!r}")

    @classmethod
    def from_env(cls, model: str | None = None) -> TabConfig:
        """The settings from the environment (`model`: the `--model` flag, which wins); a bad value
        is a `SettingError` naming the variable."""
        examples = os.environ.get(EXAMPLES_ENV)
        return cls(model=model or os.environ.get(MODEL_ENV) or "crashchat",
                   time_limit_s=from_env(TIME_LIMIT_ENV, cls.time_limit_s, positive, "a positive number of seconds"),
                   max_new_tokens=from_env(MAX_TOKENS_ENV, cls.max_new_tokens, whole(1),
                                           "a whole number of tokens (1 or more)"),
                   guided=from_env(GUIDED_ENV, None, flag, "1 (on) or 0 (off)"),
                   examples_dir=Path(examples) if examples else None)

    def generation(self) -> dict:
        """What Analyze gives `crashchat.pipeline.analyze`, and the report records under `input`."""
        return {"max_new_tokens": self.max_new_tokens, "guided": self.guided, "repetition_stop": True}

    def video_limits(self) -> VideoLimits:
        from crashchat.video import VideoLimits

        return self.limits or VideoLimits()
