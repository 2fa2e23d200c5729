"""Where a state lives: a file (SQLite, the default), or a PostgreSQL URL.

A URL is any libpq URL (``postgresql://`` or ``postgres://``) plus bulksync's own ``schema``
parameter, the schema that holds this audience's state (default ``bulksync``). It is read as libpq
reads it (the user name and password end at the first ``@`` before any ``/``, so a ``?`` or ``#``
may stand in a password as typed), and one libpq would misread, quoting a piece of the password in
its error, is refused first. Its ``str()`` never shows a password, so a message naming the state
cannot leak it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote

URL_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_SCHEMA = "bulksync"
STATE_ENV = "BULKSYNC_STATE"
SECRET_PARAMS = ("password", "sslpassword")
# Shorter forms are not blanked in messages: they would blank that run of letters wherever it stands
# (a 2-letter password in every word). No message holds them either: a URL is shown without its
# password, and a URL libpq would quote a piece of is refused before libpq sees it.
MIN_SECRET = 4
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")


class _Parts(NamedTuple):
    scheme: str
    userinfo: str | None  # ``user[:password]`` as typed, None when there is none
    address: str  # hosts, ports and /dbname
    query: str


@dataclass(frozen=True, repr=False)
class StateURL:
    """A PostgreSQL state. ``url`` is what the user gave, password included; ``str()`` leaves it out."""

    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith(URL_SCHEMES):
            raise ValueError("a state URL starts with postgresql:// or postgres://")
        if (problem := _problem(self.url)) is not None:
            raise ValueError(f"a {_parts(self.url).scheme}:// state URL {problem}")
        schema = self.schema
        if not _SCHEMA_NAME.fullmatch(schema) or schema.startswith("pg_"):
            raise ValueError(
                f"{self}: schema {schema!r} is not a plain name (lowercase letters, digits and _, at most 63, "
                "not starting with pg_); pick another ?schema="
            )

    @property
    def schema(self) -> str:
        """The schema that holds this audience's state."""
        values = [value for name, value in parse_qsl(_parts(self.url).query, keep_blank_values=True)
                  if name == "schema"]
        return values[-1] if values else DEFAULT_SCHEMA

    @property
    def conninfo(self) -> str:
        """The URL for libpq: without ``schema``, which libpq would refuse as unknown."""
        return _joined(_parts(self.url), keep_password=True, drop=("schema",))

    @property
    def secrets(self) -> tuple[str, ...]:
        """The password(s) the URL holds, as typed and decoded: what every message must leave out."""
        return url_secrets(self.url)

    def __str__(self) -> str:
        return _joined(_parts(self.url), keep_password=False, drop=SECRET_PARAMS)

    def __repr__(self) -> str:
        return f"StateURL({str(self)!r})"


StateLocation = Path | StateURL


def _parts(url: str) -> _Parts:
    """``url`` split as libpq splits it: the user info ends at the first ``@`` ahead of any ``/``,
    the query starts at the first ``?`` after it."""
    scheme, rest = url.split("://", 1)
    end = next((at for at, char in enumerate(rest) if char in "@/"), len(rest))
    userinfo = None
    if rest[end:end + 1] == "@":
        userinfo, rest = rest[:end], rest[end + 1 :]
    address, _, query = rest.partition("?")
    return _Parts(scheme, userinfo, address, query)


def _joined(parts: _Parts, *, keep_password: bool, drop: tuple[str, ...]) -> str:
    userinfo = parts.userinfo if keep_password or parts.userinfo is None else parts.userinfo.partition(":")[0]
    kept = [part for part in parts.query.split("&") if part and _name(part) not in drop]
    return (f"{parts.scheme}://" + ("" if userinfo is None else userinfo + "@") + parts.address
            + ("?" + "&".join(kept) if kept else ""))


def _name(part: str) -> str:
    return unquote(part.partition("=")[0])


def _problem(url: str) -> str | None:
    """Why libpq would misread ``url`` (and then quote a piece of its password), if it would."""
    parts = _parts(url)
    if "@" in parts.address:
        return ("holds an '@' libpq would take for part of the host: percent-encode '@' and '/' in its user "
                "name and password (as %40 and %2F), and '@' in its database name")
    if _BAD_ESCAPE.search(url):
        return "holds a '%' that starts no %XX escape (or a %00): percent-encode a '%' as %25"
    if any("=" not in part for part in parts.query.split("&")) and parts.query:
        return "has a parameter without '=': percent-encode a '&' in a parameter's value as %26"
    return None


def url_secrets(*values: object) -> tuple[str, ...]:
    """The passwords in whichever of ``values`` are state URLs (valid or not), as typed and decoded,
    longest first: those of its user info and of its ``password`` and ``sslpassword`` parameters."""
    typed: list[str] = []
    for value in values:
        url = value.url if isinstance(value, StateURL) else value
        if not isinstance(url, str) or not url.startswith(URL_SCHEMES):
            continue
        userinfo = _parts(url).userinfo or ""
        typed += [userinfo.partition(":")[2]]
        if _problem(url) is not None:  # misread by libpq: whatever may be its password is one
            rest = url.split("://", 1)[1]
            typed += [rest[:at].partition(":")[2] for at, char in enumerate(rest) if char == "@"]
        # Every parameter anywhere, not only in the query: a '?' in a password moves where that starts.
        typed += [part.partition("=")[2] for part in re.split(r"[?&]", url) if _name(part) in SECRET_PARAMS]
    forms = {form for text in typed for form in (text, unquote(text))}
    return tuple(sorted((form for form in forms if len(form) >= MIN_SECRET), key=len, reverse=True))


def state_noun(location: StateLocation) -> str:
    """What messages call the state: a file, or a state (in PostgreSQL)."""
    return "state file" if isinstance(location, Path) else "state"


def state_location(value: str | Path | StateURL) -> StateLocation:
    """A file path, or a :class:`StateURL` for a ``postgresql://`` or ``postgres://`` URL.

    Raises ValueError (without the password) for a URL whose schema cannot be used.
    """
    if isinstance(value, Path | StateURL):
        return value
    return StateURL(value) if value.startswith(URL_SCHEMES) else Path(value)


def plan_state(recorded: str, environ: Mapping[str, str]) -> StateLocation:
    """The state a plan file names. A URL is recorded without its password: ``BULKSYNC_STATE``
    supplies it when it names the same state, else libpq finds one (``PGPASSWORD``, ``~/.pgpass``)."""
    location = state_location(recorded)
    given = environ.get(STATE_ENV, "")
    if isinstance(location, StateURL) and given.startswith(URL_SCHEMES):
        from_env = StateURL(given)
        if str(from_env) == str(location):
            return from_env
    return location


def describe(location: StateLocation) -> str:
    """How a plan file (and ``state show``) names the state: a file's absolute path, a URL without password."""
    return str(location.resolve()) if isinstance(location, Path) else str(location)
