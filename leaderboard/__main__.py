"""`python -m leaderboard score FILE... [--split-dir DIR] [--protocol paper|strict]
[--bootstrap N] [--bertscore] [--json OUT]`: score prediction files on the CrashChat test split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from leaderboard.split import SplitError, load_split
from leaderboard.submission import MAX_BYTES, SubmissionError, read_submission


def score_command(argv: list[str], prog: str = "python -m leaderboard score") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split(":")[1].strip())
    parser.add_argument("files", nargs="+", type=Path, help="prediction files (authors' JSON, or JSONL/CSV/JSON rows video,task,response)")
    parser.add_argument("--split-dir", help="folder with the six test files (else CRASHCHAT_SPLIT_DIR, else a verified download)")
    parser.add_argument("--protocol", choices=("paper", "strict"), default="paper", help="which protocol the table shows (JSON has both)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for 95%% intervals (0 disables; default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--bertscore", action="store_true", help="also compute BERTScore F1 (needs bert-score and roberta-large)")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, help="size limit per file (default 50 MB)")
    parser.add_argument("--json", dest="json_out", type=Path, help="write the full result here")
    args = parser.parse_args(argv)
    if args.bootstrap < 0:
        parser.error("--bootstrap must be 0 or more")
    from leaderboard.scoring import render_text, score  # after argument errors: keeps --help fast

    try:
        split = load_split(args.split_dir)
        submission = read_submission(args.files, split, max_bytes=args.max_bytes)
    except (SplitError, SubmissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = score(submission, split, bootstrap=args.bootstrap, bertscore=args.bertscore, seed=args.seed)
    print(render_text(result, args.protocol))
    if args.bertscore and result["bertscore"] != "computed":
        print(f"note: BERTScore not computed: {result['bertscore']}", file=sys.stderr)
    if args.json_out:
        try:
            args.json_out.write_text(json.dumps(result, indent=1))
        except OSError as exc:
            print(f"error: {args.json_out}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            return 2
    return 0


COMMANDS = {"score": score_command}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m leaderboard {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
