"""Who submits, which names they may use, how often (`leaderboard.identity`), without Gradio or SQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from leaderboard import identity
from leaderboard.identity import Holder, NameRefused, RateLimited, SignInRequired, Submitter, check_name, name_keys

REPO = Path(__file__).resolve().parents[1]
PAPER = ("VideoLLaMA3 7B", "CrashChat-7B (heterogeneous multitask)")
ALICE = Submitter("alice", "huggingface")


@pytest.fixture
def space(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/crashchat")
    monkeypatch.delenv("CRASHCHAT_SUBMIT_LIMIT", raising=False)
    monkeypatch.delenv("CRASHCHAT_ADMINS", raising=False)


@pytest.fixture
def local(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv("CRASHCHAT_SUBMIT_LIMIT", raising=False)


@pytest.mark.parametrize("a, b", [
    ("CrashChat-7B", "crashchat-7b"),                 # case
    ("CrashChat-7B", " CrashChat-7B  "),              # whitespace around
    ("VideoLLaMA3 7B", "VideoLLaMA3   7B"),           # whitespace inside
    ("CrashChat-7B", "\u0421rash\u0421hat-7B"),       # Cyrillic С for C
    ("CrashChat-7B", "\uff23rashChat-7B"),            # fullwidth (NFKC)
    ("model-v1", "model-vl"),                         # digit one for l
    ("Claude", "CIaude"),                             # capital I for l
    ("InternVL", "INTERNVL"), ("ILL", "ill"),
    ("Qwen", "Qw\u0435n"),                            # Cyrillic е for e
])
def test_look_alikes_share_a_skeleton(a, b):
    assert set(name_keys(a)) & set(name_keys(b))


@pytest.mark.parametrize("a, b", [("Qwen-7B", "Qwen-3B"), ("model A", "model B"), ("LLaVA", "LLaMA"),
                                  ("CrashChat 7B", "CrashChat 13B")])
def test_different_names_stay_different(a, b):
    assert not set(name_keys(a)) & set(name_keys(b))


def test_the_confusables_come_from_unicodes_table():
    """Not a hand list: the mapping covers thousands of characters of the maintained package's data."""
    from confusable_homoglyphs import confusables

    table = identity._prototypes()
    assert len(table) > 3000 and len(confusables.confusables_data) > 9000
    assert table["\u0430"] == "a" and table["\u03bf"] == "o"  # Cyrillic a, Greek omicron


def test_paper_names_and_claims_are_refused():
    for name in ["VideoLLaMA3 7B", "videollama3 7b ", "VideoLLaMA3 7\u0392", "My model (paper)", "x [Paper]",
                 "CrashChat-7B (heterogeneous multitask)", "CrashChat-7B (heterogeneous  MULTITASK)",
                 "my model (р\u0430per)"]:
        with pytest.raises(NameRefused, match="paper") as refused:
            check_name(name, ALICE, reserved=PAPER, holders=[])
        assert "\n" not in str(refused.value)
    check_name("VideoLLaMA3 7B zero-shot, 16 frames", ALICE, reserved=PAPER, holders=[])  # its own name


def test_a_name_belongs_to_one_submitter_and_is_used_once():
    bob = [Holder("bob", 4, "Bob's model")]
    with pytest.raises(NameRefused, match=r"looks like, \"Bob's model\" \(row #4\) of bob"):
        check_name("bob's model", ALICE, reserved=PAPER, holders=bob)
    with pytest.raises(NameRefused, match=r"you already have a row named 'mine' \(row #2\).*version"):
        check_name("Mine", ALICE, reserved=PAPER, holders=[Holder("alice", 2, "mine")])
    with pytest.raises(NameRefused) as hidden:  # a hidden row's name is taken, and nothing of it is said
        check_name("secret", ALICE, reserved=PAPER, holders=[Holder("carol", 3, "secret", hidden=True)])
    assert str(hidden.value) == "model name: 'secret' is taken; pick another"
    with pytest.raises(NameRefused, match="before sign-in was recorded"):
        check_name("old", ALICE, reserved=PAPER, holders=[Holder(identity.UNRECORDED, 1, "old")])


def test_submitter_on_a_space_and_locally(space, monkeypatch):
    assert identity.on_space()
    assert identity.submitter("alice") == Submitter("alice", "huggingface")
    assert identity.submitter(None, "hf_x", whoami=lambda token: "bob") == Submitter("bob", "token")
    with pytest.raises(SignInRequired, match="Sign in with Hugging Face"):
        identity.submitter(None, None)

    def broken(token):
        raise OSError("hub unreachable")

    with pytest.raises(SignInRequired, match=r"cannot tell who the token belongs to \(OSError\)"):
        identity.submitter(None, "hf_x", whoami=broken)
    monkeypatch.setenv("CRASHCHAT_ADMINS", "Carol, dave")
    assert identity.submitter("carol").admin and not identity.submitter("alice").admin
    monkeypatch.delenv("SPACE_ID")
    monkeypatch.setattr(identity.getpass, "getuser", lambda: "researcher")
    assert identity.submitter("ignored") == Submitter("researcher", "local")  # locally: no sign-in


def test_rate_limit_per_submitter(space, monkeypatch):
    now = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert identity.submit_limit() == 5
    times = [now - timedelta(hours=h) for h in (23, 20, 5, 1, 0.5)]
    identity.check_rate(times[:4], ALICE, limit=5, now=now)
    with pytest.raises(RateLimited) as limited:
        identity.check_rate(times, ALICE, limit=5, now=now)
    # The oldest of the five leaves the window at 13:00: the message says so.
    assert str(limited.value) == ("submit limit: 5 submissions in 24 hours per submitter; your next one is "
                                  "possible at 2026-05-01 13:00 UTC (in 1 h 0 min)")
    identity.check_rate(times + [now - timedelta(days=2)] * 9, Submitter("carol", "huggingface", admin=True),
                        limit=5, now=now)  # admins are exempt
    identity.check_rate([now - timedelta(hours=25)] * 10, ALICE, limit=5, now=now)  # a rolling window
    monkeypatch.setenv("CRASHCHAT_SUBMIT_LIMIT", "2")
    assert identity.submit_limit() == 2
    monkeypatch.setenv("CRASHCHAT_SUBMIT_LIMIT", "many")
    with pytest.raises(ValueError, match="CRASHCHAT_SUBMIT_LIMIT='many'"):
        identity.submit_limit()
    monkeypatch.setenv("CRASHCHAT_SUBMIT_LIMIT", "0")
    with pytest.raises(RateLimited, match="closed"):
        identity.check_rate([], ALICE, limit=identity.submit_limit(), now=now)


def test_no_limit_locally_unless_set(local, monkeypatch):
    assert identity.submit_limit() is None
    identity.check_rate([datetime.now(timezone.utc)] * 100, identity.local_submitter(), limit=None)
    monkeypatch.setenv("CRASHCHAT_SUBMIT_LIMIT", "3")
    assert identity.submit_limit() == 3


def test_the_space_turns_on_sign_in():
    """`hf_oauth: true` in the README front matter: without it a Space has no login route."""
    from huggingface_hub import SpaceCard

    card = SpaceCard((REPO / "README.md").read_text(encoding="utf-8")).data
    assert card.get("hf_oauth") is True
