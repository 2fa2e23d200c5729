"""Where a state lives: a file (SQLite, the default), or a PostgreSQL URL.

A URL is any libpq URL (``postgresql://`` or ``postgres://``) plus bulksync's own ``schema``
parameter, the schema that holds this audience's state (default ``bulksync``). Its ``str()`` never
shows the password, so a message naming the state cannot leak it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote

URL_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_SCHEMA = "bulksync"
STATE_ENV = "BULKSYNC_STATE"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True, repr=False)
class StateURL:
    """A PostgreSQL state. ``url`` is what the user gave, password included; ``str()`` leaves it out."""

    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith(URL_SCHEMES):
            raise ValueError("a state URL starts with postgresql:// or postgres://")
        schema = self.schema
        if not _SCHEMA_NAME.fullmatch(schema) or schema.startswith("pg_"):
            raise ValueError(
                f"{self}: schema {schema!r} is not a plain name (lowercase letters, digits and _, at most 63, "
                "not starting with pg_); pick another ?schema="
            )

    @property
    def schema(self) -> str:
        """The schema that holds this audience's state."""
        values = [value for name, value in self._params() if name == "schema"]
        return values[-1] if values else DEFAULT_SCHEMA

    @property
    def conninfo(self) -> str:
        """The URL for libpq: without ``schema``, which libpq would refuse as unknown."""
        base, _, query = self.url.partition("?")
        kept = [part for part in query.split("&") if part and unquote(part.partition("=")[0]) != "schema"]
        return base + ("?" + "&".join(kept) if kept else "")

    @property
    def secrets(self) -> tuple[str, ...]:
        """The password(s) the URL holds, as typed and decoded: what every message must leave out."""
        return url_secrets(self.url)

    def _userinfo(self) -> str:
        return _userinfo(self.url)

    def _params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.url.partition("?")[2], keep_blank_values=True)

    def __str__(self) -> str:
        scheme, rest = self.url.split("://", 1)
        userinfo = self._userinfo()
        if ":" in userinfo:
            rest = userinfo.partition(":")[0] + rest[len(userinfo) :]
        base, _, query = rest.partition("?")
        kept = [part for part in query.split("&") if part and unquote(part.partition("=")[0]) != "password"]
        return f"{scheme}://{base}" + ("?" + "&".join(kept) if kept else "")

    def __repr__(self) -> str:
        return f"StateURL({str(self)!r})"


StateLocation = Path | StateURL


def _userinfo(url: str) -> str:
    """``user:password`` before the last ``@`` ahead of the query: a '/' typed into a password must
    not hide it from redaction (a database name holding '@' is then redacted too, harmlessly)."""
    before_query = url.split("://", 1)[1].partition("?")[0]
    return before_query.rpartition("@")[0]


def url_secrets(*values: object) -> tuple[str, ...]:
    """The passwords in whichever of ``values`` are state URLs (valid or not), as typed and decoded."""
    typed: list[str] = []
    for value in values:
        url = value.url if isinstance(value, StateURL) else value
        if not isinstance(url, str) or not url.startswith(URL_SCHEMES):
            continue
        userinfo = _userinfo(url)
        typed += [userinfo.partition(":")[2]] if ":" in userinfo else []
        typed += [part.partition("=")[2] for part in url.partition("?")[2].split("&")
                  if unquote(part.partition("=")[0]) == "password"]
    return tuple(sorted({form for text in typed for form in (text, unquote(text)) if form}, key=len, reverse=True))


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
