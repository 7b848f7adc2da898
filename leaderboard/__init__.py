"""The CrashChat benchmark: the test split, submissions, metrics, and the leaderboard."""

# Bumped whenever a change could alter any score; stored with every verified row.
SCORER_VERSION = "1.1.0"
