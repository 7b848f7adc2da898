"""Who submits, which model names they may use, and how often: the leaderboard's identity rules.

Plain functions with no Gradio and no SQL, so that every kind of submission (prediction files
today, evaluation requests later) applies the same rules:

- `submitter(...)`: on a Hugging Face Space (`SPACE_ID` set) the signed-in Hugging Face user
  (*Sign in with Hugging Face*, or an API client's token), else refused; run locally, the local
  user (`getpass.getuser()`), no sign-in.
- `name_keys(name)`: the skeletons a model name is compared by: NFKC, case-folded, whitespace
  collapsed, and every character mapped to one representative of its confusable set from
  Unicode's confusables table (TR39, through the maintained `confusable-homoglyphs` package), so
  `СrashСhat` (Cyrillic С) or `CrashChat ` is the same name as `CrashChat`.
- `check_name(...)`: refuses a paper row's name or a look-alike, anything marked `(paper)`,
  another submitter's name, and a name the submitter already used.
- `check_rate(...)`: at most `submit_limit()` submissions per submitter in any 24 hours
  (`CRASHCHAT_SUBMIT_LIMIT`; default 5 on a Space, none locally); admins (`CRASHCHAT_ADMINS`)
  are exempt. The message says when the next submission is possible.

>>> name_keys("СrashСhat-7B ") == name_keys("crashchat-7b")
True
"""

from __future__ import annotations

import getpass
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from crashchat.settings import from_env, whole

DEFAULT_SPACE_LIMIT = 5
WINDOW = timedelta(days=1)
UNRECORDED = ""
"""The submitter of rows stored before submitters were recorded (schema 2): nobody, so their names
stay theirs."""


class IdentityError(ValueError):
    """A submission refused for who sent it or what it is called; the message is one line."""


class SignInRequired(IdentityError):
    pass


class NameRefused(IdentityError):
    pass


class RateLimited(IdentityError):
    pass


@dataclass(frozen=True)
class Submitter:
    name: str
    """The Hugging Face username on a Space, the local user name otherwise."""
    via: str
    """`huggingface` (signed in), `token` (an API client's Hugging Face token) or `local`."""
    admin: bool = False
    """Listed in `CRASHCHAT_ADMINS`: exempt from the rate limit."""


def on_space() -> bool:
    """Running as a Hugging Face Space (the Space runtime sets `SPACE_ID`)."""
    return bool(os.environ.get("SPACE_ID"))


def admins() -> frozenset[str]:
    """`CRASHCHAT_ADMINS`: Hugging Face usernames (comma- or space-separated), compared case-folded."""
    return frozenset(n.casefold() for n in re.split(r"[,\s]+", os.environ.get("CRASHCHAT_ADMINS", "")) if n)


def _with_role(name: str, via: str) -> Submitter:
    return Submitter(name, via, admin=name.casefold() in admins())


def local_submitter() -> Submitter:
    """The user running the app or the command (no sign-in outside a Space)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # a container without a passwd entry or LOGNAME/USER
        name = "local"
    return _with_role(name or "local", "local")


def hub_username(token: str) -> str:
    """The Hugging Face user a token belongs to (`huggingface_hub.whoami`; needs the Hub)."""
    from huggingface_hub import whoami

    info = whoami(token=token)
    if info.get("type") != "user" or not info.get("name"):
        raise SignInRequired("the token given is not a Hugging Face user's token; sign in, or pass a user "
                             "access token (gradio_client: Client(..., oauth_token=...))")
    return str(info["name"])


SIGN_IN = ("submitting here needs Sign in with Hugging Face (the button at the top of the Submit tab); "
           "from gradio_client, pass your token: Client(..., oauth_token=...)")


def submitter(username: str | None = None, token: str | None = None, *,
              whoami: Callable[[str], str] | None = None) -> Submitter:
    """Who is submitting. On a Space: the signed-in user (`username` from `gr.OAuthProfile`), else
    the owner of an API client's `token`, else `SignInRequired`. Locally: the local user."""
    if not on_space():
        return local_submitter()
    if username:
        return _with_role(username, "huggingface")
    if token:
        try:
            name = (whoami or hub_username)(token)
        except IdentityError:
            raise
        except Exception as exc:  # noqa: BLE001 - an invalid token or the Hub unreachable: not signed in
            raise SignInRequired(f"cannot tell who the token belongs to ({type(exc).__name__}); {SIGN_IN}") from None
        return _with_role(name, "token")
    raise SignInRequired(SIGN_IN)


# --- model names ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Character -> the representative of its confusable set (Unicode's confusables, TR39).

    The package lists, per character, the characters it can be confused with; each connected set
    gets one representative: a lower-case ASCII letter if the set has one, else an ASCII
    character, else its lowest code point (`0`/`O` -> `o` after case folding, `1`/`I`/`l` -> `l`).
    Multi-character look-alikes (`rn` for `m`) are not mapped.
    """
    from confusable_homoglyphs import confusables

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for char, glyphs in confusables.confusables_data.items():
        for glyph in glyphs:
            other = glyph["c"].replace("\u200e", "")  # the data wraps right-to-left letters in LRM marks
            if len(char) == 1 and len(other) == 1:
                a, b = find(char), find(other)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    members: dict[str, list[str]] = {}
    for char in list(parent):
        members.setdefault(find(char), []).append(char)

    def rank(c: str) -> tuple:
        return (not c.isascii(), not (c.isascii() and c.islower()), ord(c))

    out = {}
    for group in members.values():
        best = min(group, key=rank)
        for char in group:
            if char != best:
                out[char] = best
    return out


def _mapped(text: str) -> str:
    table = _prototypes()
    return "".join(table.get(c, c) for c in text)


def name_keys(name: str) -> tuple[str, str]:
    """The two skeletons a model name is compared by; two names clash when any skeletons match.

    Both are NFKC, case-folded, with whitespace collapsed, and confusables mapped: the first
    folds case before mapping (so `ILL` and `ill` clash), the second maps before folding too (so
    a capital I passes for an l: `CIaude` and `Claude` clash).
    """
    def finish(text: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", text).split())

    base = unicodedata.normalize("NFKC", name)
    first = finish(_mapped(base.casefold()))
    second = finish(_mapped(_mapped(base).casefold()))
    return first, second


_PAPER_MARK = re.compile(r"[(\[{<]\s*paper\b")


@dataclass(frozen=True)
class Holder:
    """A stored row holding a model name: who submitted it, its id and whether it is hidden."""

    submitter: str
    row_id: int
    model: str
    hidden: bool = False


def check_name(name: str, who: Submitter, *, reserved: Iterable[str], holders: Sequence[Holder]) -> None:
    """Refuse a model name that is, or looks like, a paper row's name, is marked `(paper)`, is
    another submitter's, or one `who` already used (`holders`: the rows whose name keys match).
    Raises `NameRefused` with a one-line message naming what it clashes with."""
    keys = set(name_keys(name))
    if any(_PAPER_MARK.search(k) for k in keys):
        raise NameRefused("model name: '(paper)' marks the numbers printed in the paper; a verified row needs "
                          "a name of its own")
    for paper in reserved:
        if keys & set(name_keys(paper)):
            raise NameRefused(f"model name: {name!r} is, or looks like, the paper's row {paper!r}; a verified "
                              "row needs a name of its own (e.g. add how you ran it)")
    for holder in holders:
        if holder.submitter != who.name:
            if holder.hidden:
                raise NameRefused(f"model name: {name!r} is taken; pick another")
            owner = holder.submitter or "a submitter from before sign-in was recorded"
            raise NameRefused(f"model name: {name!r} is, or looks like, {holder.model!r} (row #{holder.row_id}) "
                              f"of {owner}; pick another name")
        raise NameRefused(f"model name: you already have a row named {holder.model!r} (row #{holder.row_id}); "
                          "a name is used once per submitter: add a version (e.g. 'v2')")


# --- rate limit ---------------------------------------------------------------------------------------


def submit_limit() -> int | None:
    """Submissions per submitter in any 24 hours: `CRASHCHAT_SUBMIT_LIMIT`, else 5 on a Space and
    no limit locally. Raises `SettingError` (a `ValueError`) for a value that is not a whole number >= 0."""
    return from_env("CRASHCHAT_SUBMIT_LIMIT", DEFAULT_SPACE_LIMIT if on_space() else None, whole(0),
                    "a whole number of submissions (0 or more)")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def check_rate(times: Iterable[datetime], who: Submitter, *, limit: int | None, now: datetime | None = None,
               window: timedelta = WINDOW) -> None:
    """Refuse a submission when `who` made `limit` in the `window` before `now` (`times`: theirs,
    timezone-aware); the message says when the next one is possible. Admins are exempt."""
    if limit is None or who.admin:
        return
    now = now or utc_now()
    recent = sorted(t for t in times if now - window < t <= now)
    if len(recent) < limit:
        return
    if limit == 0:
        raise RateLimited("submit limit: submissions are closed on this leaderboard (CRASHCHAT_SUBMIT_LIMIT=0)")
    next_at = recent[len(recent) - limit] + window
    wait = max(1, math.ceil((next_at - now).total_seconds() / 60))
    raise RateLimited(f"submit limit: {limit} submissions in 24 hours per submitter; your next one is possible "
                      f"at {next_at:%Y-%m-%d %H:%M} UTC (in {wait // 60} h {wait % 60} min)")
