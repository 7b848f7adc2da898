"""`python -m leaderboard COMMAND`: score prediction files, and maintain the leaderboard's database.

    python -m leaderboard score FILE... [--split-dir DIR] [--protocol paper|strict] [--bootstrap N]
                                        [--bertscore] [--json OUT]
    python -m leaderboard list [--db PATH]                 every row, hidden ones marked
    python -m leaderboard rescore [--db PATH] [--split-dir DIR] [--force] [--bootstrap N]
    python -m leaderboard {hide,unhide,delete} ROW [--db PATH]   (needs CRASHCHAT_ADMIN_TOKEN)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

from leaderboard.split import SplitError, load_split
from leaderboard.submission import MAX_BYTES, SubmissionError, read_submission

SCORE_HELP = "score prediction files on the CrashChat test split"


def score_command(argv: list[str], prog: str = "python -m leaderboard score") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=SCORE_HELP)
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


def _db_parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m leaderboard {command}", description=description)
    parser.add_argument("--db", default=None, help="database file (default: CRASHCHAT_DB or the user data dir)")
    return parser


def _maintain(run):
    """Run a database command; a user mistake (no such row, no token, bad database) is one line, exit 2."""
    from leaderboard.store import RowNotFound, StoreError

    try:
        return run()
    except (StoreError, SplitError, PermissionError, RowNotFound, sqlite3.DatabaseError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def list_command(argv: list[str]) -> int:
    args = _db_parser("list", "list verified rows (hidden ones marked)").parse_args(argv)

    def run() -> int:
        from leaderboard.store import Store

        store = Store(args.db)
        rows = store.rows(include_hidden=True)
        if not rows:
            print(f"no verified rows yet in {store.path}")
        for row in rows:
            flag = " (hidden)" if row.hidden else ""
            print(f"#{row.id}\t{row.model!r}{flag}\tscorer {row.scorer_version}\tsplit "
                  f"{row.split_sha256[:12]}\t{row.submitted_at}\tanswers {row.answers_sha256[:16]}")
        return 0

    return _maintain(run)


def rescore_command(argv: list[str]) -> int:
    parser = _db_parser("rescore", "re-score rows scored by another scorer version or split")
    parser.add_argument("--split-dir", default=None)
    parser.add_argument("--force", action="store_true", help="re-score every row")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)

    def run() -> int:
        from leaderboard.intake import rescore
        from leaderboard.store import Store

        store = Store(args.db)
        lines = rescore(store, load_split(args.split_dir), force=args.force, bootstrap=args.bootstrap)
        print("\n".join(lines) if lines else "every row is current")
        return 0

    return _maintain(run)


def admin_command(action: str):
    def command(argv: list[str]) -> int:
        parser = _db_parser(action, f"{action} a row (needs CRASHCHAT_ADMIN_TOKEN in the environment)")
        parser.add_argument("row_id", type=int)
        args = parser.parse_args(argv)

        def run() -> int:
            from leaderboard.store import Store

            store = Store(args.db)
            token = os.environ.get("CRASHCHAT_ADMIN_TOKEN")
            if action == "delete":
                store.delete(args.row_id, admin_token=token)
            else:
                store.set_hidden(args.row_id, action == "hide", admin_token=token)
            print(f"#{args.row_id}: {action} done")
            return 0

        return _maintain(run)

    return command


COMMANDS = {"score": score_command, "list": list_command, "rescore": rescore_command,
            **{action: admin_command(action) for action in ("hide", "unhide", "delete")}}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print("usage:\n" + __doc__.split("\n\n")[1], file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
