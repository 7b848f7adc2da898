"""The CrashChat benchmark: the test split, submissions, metrics, and the leaderboard."""

# Bumped whenever a change could alter any score; stored with every verified row.
SCORER_VERSION = "1.1.0"
# 1.1.0: the paper protocol drops unparseable pre-crash times (they scored as 0.0 s in 1.0.0).
