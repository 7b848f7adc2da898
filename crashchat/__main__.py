"""`python -m crashchat COMMAND ...`: each command lives in its own module with a `main(argv)`.

Imports are lazy so that `--help` and light commands do not pay for torch/transformers.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "analyze": ("crashchat.analysis", "Six-task report for one video."),
    "predict": ("crashchat.predict", "Answer the test split's prompts for every video (a leaderboard submission)."),
    "inspect": ("crashchat.inspection", "What the model would see for a video: frames, labels, visual tokens, prompts."),
    "convert": ("crashchat.convert", "Authors' checkpoints -> native transformers base and peft adapters."),
    "train": ("crashchat.train", "LoRA instruction tuning with task decoupling and grouping."),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m crashchat COMMAND [ARGS]\n\ncommands:")
        for name, (_, about) in COMMANDS.items():
            print(f"  {name:<9} {about}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest) or 0


if __name__ == "__main__":
    sys.exit(main())
