"""`crashchat COMMAND ...` (or `python -m crashchat COMMAND ...`): one entry point for every command.

Each command is a `main(argv)` function in its own module; imports are lazy so that `--help` and
light commands do not pay for torch/transformers.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "analyze": ("crashchat.analysis:main", "Six-task report for one video."),
    "predict": ("crashchat.predict:main", "Answer the test split's questions for every video (a leaderboard submission)."),
    "inspect": ("crashchat.inspection:main", "What the model would see for a video: frames, labels, visual tokens, prompts."),
    "convert": ("crashchat.convert:main", "Authors' checkpoints -> native transformers base and peft adapters."),
    "train": ("crashchat.train:main", "LoRA instruction tuning with task decoupling and grouping."),
    "data": ("crashchat.clips:main", "The benchmark's clips: `data fetch` downloads (or takes) and checks them."),
    "worker": ("crashchat.worker:main", "Evaluate the leaderboard's queued model ids on this machine's GPUs."),
    "score": ("leaderboard.__main__:score_command", "Score prediction files on the test split (the benchmark)."),
    "app": ("app:main", "Start the Gradio app (chat and leaderboard tabs)."),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: crashchat COMMAND [ARGS]   (or python -m crashchat COMMAND [ARGS])\n\ncommands:")
        for name, (_, about) in COMMANDS.items():
            print(f"  {name:<9} {about}")
        print("\n`crashchat COMMAND --help` describes a command.")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, function = COMMANDS[name][0].split(":")
    return getattr(importlib.import_module(module), function)(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
