"""`crashchat COMMAND ...` (or `python -m crashchat COMMAND ...`): one entry point for every command.

Each command is a `main(argv, prog)` function in its own module; imports are lazy so that `--help`
and light commands do not pay for torch/transformers. The rule for every command, old or new:
`prog` is what its usage line calls it (`crashchat analyze`, or `python -m crashchat analyze`
when run that way), passed down from here, so each `--help` names its own command.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

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


def program() -> str:
    """How the user started us: `python -m crashchat` (this file run as a module) or the installed `crashchat`."""
    return "python -m crashchat" if Path(sys.argv[0]).name == "__main__.py" else "crashchat"


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
    command = getattr(importlib.import_module(module), function)
    return command(rest, prog=f"{program()} {name}") or 0


if __name__ == "__main__":
    sys.exit(main())
