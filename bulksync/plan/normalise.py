"""Turn source columns into Loops fields, check every row, and keep one row per contact.

All of it is column-wise polars work: the result is a frame of canonical text values (booleans as
``true``/``false``), a key per row, and a frame of rejected rows with the reason for each.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import polars_hash as plh

from bulksync.columns import KEY, KEY_HASH, REASON, ROW, STATE_ROW
from bulksync.config import KeyField
from bulksync.errors import InputError
from bulksync.fields import (
    FALSE_WORDS,
    MAILING_LISTS,
    MAX_STRING_CHARS,
    READ_ONLY_FIELDS,
    STANDARD_FIELDS,
    TRUE_WORDS,
    is_list_field,
    list_field,
    loops_name,
)
from bulksync.source.batch import Source, kind_type

LISTS_INVALID = "__lists_invalid"
_NO_REJECTS = pl.DataFrame(schema={ROW: pl.UInt32, KEY: pl.String, REASON: pl.String})

# Deliberately simple: Loops is the judge of deliverability; this only stops what it would refuse.
# No spaces, control characters or invisible format characters (zero-width spaces, bidi marks):
# "a\u200b@x.io" would look like a@x.io and become a second contact.
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\p{Cf}]+@[^@\s\x00-\x1f\p{Cf}]+\.[^@\s\x00-\x1f.\p{Cf}]{2,}$"
CONTROL_CHARS = r"[\x00-\x1f\x7f]"


@dataclass
class Contacts:
    """Valid rows (one per key), the type of each field, and the rejected rows with reasons."""

    frame: pl.DataFrame
    types: dict[str, str]
    rejects: pl.DataFrame

    @property
    def fields(self) -> list[str]:
        return [c for c in self.frame.columns if c not in (ROW, KEY)]


def normalise(source: Source, key: KeyField = "email") -> Contacts:
    """Map, clean, validate and de-duplicate the rows of ``source`` (all of them at once)."""
    checked = validate(source, key)
    valid, duplicates, shared = deduplicate(checked.frame, key)
    winners = pl.concat([valid.select(ROW, KEY), shared.select(ROW, KEY)]).rename({ROW: WINNER})
    named = duplicates.join(winners.cast({WINNER: pl.UInt32}), on=WINNER, how="left", maintain_order="left")
    rejects = pl.concat([checked.rejects, duplicate_lines(named), shared_lines(shared, key)]).sort(ROW)
    return Contacts(frame=valid, types=checked.types, rejects=rejects)


def validate(source: Source, key: KeyField = "email") -> Contacts:
    """Clean and check the rows of ``source`` (one batch of a file): its frame may still hold
    several rows per contact, which only :func:`deduplicate`, over the whole file, can settle."""
    renames = _field_names(source)
    frame = source.frame.rename(renames)
    kinds = {renames.get(c, c): kind for c, kind in source.kinds.items()}
    require_identity(source, frame.columns, key)
    frame, list_reason = _expand_mailing_lists(frame, source)
    fields = [c for c in frame.columns if not c.startswith("__")]
    types = {name: _field_type(name, kinds.get(name, "string")) for name in fields}
    frame = _cleaned(frame, fields, types)
    frame = frame.with_columns(
        pl.col(key).alias(KEY),
        _reason(fields, types, key, list_reason, source.may_hold_nul).alias(REASON),
    )
    frame = frame.with_columns(_canonical_booleans(fields, types)).drop(LISTS_INVALID, strict=False)
    if frame[REASON].null_count() == frame.height:  # the usual case: no copy of the frame
        valid, rejects = frame, _NO_REJECTS
    else:
        valid = frame.filter(pl.col(REASON).is_null())
        # The full key: it is matched against the state (a rejected row's contact is never missing);
        # only what is shown to people is shortened.
        rejects = frame.filter(pl.col(REASON).is_not_null()).select(ROW, KEY, REASON)
    keyless = pl.DataFrame(
        {ROW: [r for r, _ in source.malformed], REASON: [m for _, m in source.malformed]},
        schema={ROW: pl.UInt32, REASON: pl.String},
    ).select(ROW, pl.lit(None, dtype=pl.String).alias(KEY), REASON)
    if source.rejects is not None:  # rows the mapping refused: named by their key when it is there
        refused = source.rejects
        key_value = _trimmed(key, "string") if key in refused.columns else pl.lit(None, dtype=pl.String)
        keyless = pl.concat([keyless, refused.select(pl.col(ROW).cast(pl.UInt32), key_value.alias(KEY), REASON)])
    rejects = pl.concat([rejects.cast({ROW: pl.UInt32}), keyless]).sort(ROW)
    return Contacts(frame=valid.drop(REASON), types=types, rejects=rejects)


KeyText = Callable[[pl.DataFrame], pl.Series]
WINNER = "__winner"  # the row that won over a rejected one
OTHER = "__other"  # the other identifier's value, on a row rejected for sharing it


def deduplicate(
    valid: pl.DataFrame, key: KeyField = "email", key_text: KeyText | None = None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One row per contact: the last row of each key wins, and no two contacts share the other
    identifier. Returns the rows kept; the duplicates (``ROW``, ``WINNER``: the key's last row);
    and the rows that lost the other identifier (``ROW``, ``WINNER``, ``KEY``, ``OTHER``, and
    ``STATE_ROW`` if ``valid`` has it). :func:`duplicate_lines` and :func:`shared_lines` word them.

    ``valid`` needs ``ROW``, ``KEY`` (or ``KEY_HASH`` and ``key_text``, which gives the KEY of the
    rows it is passed: a whole file's keys need not be in memory as text) and the other identifier's
    column when the source has one.
    """
    valid, duplicates = keep_last(valid, KEY, key_text)
    other = other_identifier(key)
    if other in valid.columns:
        # Two contacts may not share the other identifier: Loops would merge them into one (its upsert
        # matches either). The last row keeps it; earlier rows are rejected, naming the row that won.
        valid, shared = keep_last(valid, other, key_text)
    else:
        shared = duplicates.clear().with_columns(pl.lit(None, pl.String).alias(other))
    extra = [STATE_ROW] if STATE_ROW in shared.columns else []
    return valid, duplicates.select(ROW, WINNER), shared.select(ROW, WINNER, KEY, pl.col(other).alias(OTHER), *extra)


def other_identifier(key: KeyField) -> str:
    """The identifier that is not the key: no two contacts may share it either."""
    return "userId" if key == "email" else "email"


def duplicate_lines(duplicates: pl.DataFrame) -> pl.DataFrame:
    """``ROW``, ``KEY``, ``REASON`` of rows a later row of their key beat (``ROW``, ``WINNER``, ``KEY``)."""
    reason = message("duplicate of row ", pl.col(WINNER), " (the last row for a contact wins)")
    return duplicates.select(pl.col(ROW).cast(pl.UInt32), KEY, reason.alias(REASON))


def shared_lines(shared: pl.DataFrame, key: KeyField) -> pl.DataFrame:
    """``ROW``, ``KEY``, ``REASON`` of rows a later contact took the other identifier from."""
    other = other_identifier(key)
    reason = message(f"{other} ", shortened(pl.col(OTHER)), " is also on row ", pl.col(WINNER),
                     f" (one {other} belongs to one contact)")
    return shared.select(pl.col(ROW).cast(pl.UInt32), KEY, reason.alias(REASON))


def message(*parts: str | pl.Expr) -> pl.Expr:
    """A per-row message from literal text and column values (field names may hold any character)."""
    return pl.concat_str([pl.lit(part) if isinstance(part, str) else part.cast(pl.String) for part in parts])


def field_names(source: Source) -> list[str]:
    """The Loops names ``normalise`` gives the source's columns."""
    renames = _field_names(source)
    return [renames.get(column, column) for column in source.columns]


def require_identity(source: Source, columns: list[str], key: KeyField) -> None:
    """The file must have an email column (and a userId one under --key userId)."""
    where = f"{source.path}:{source.header_line}"
    if "email" not in columns:
        raise InputError(
            f"{where}: no email column (found: {', '.join(source.columns) or 'none'}); "
            "add an 'email' column or map one with --mapping or --preset"
        )
    if key == "userId" and "userId" not in columns:
        raise InputError(f"{where}: --key userId needs a userId column; add one or use --key email")


def _field_names(source: Source) -> dict[str, str]:
    """Map headers to Loops field names: standard fields match case-insensitively, others stay."""
    renames: dict[str, str] = {}
    taken: dict[str, str] = {}
    where = f"{source.path}:{source.header_line}"
    for column in source.columns:
        name = loops_name(column)
        if name in READ_ONLY_FIELDS:
            raise InputError(f"{where}: column {column!r} is read-only in Loops; drop it or rename it")
        if name in taken:
            raise InputError(
                f"{where}: columns {taken[name]!r} and {column!r} both map to {name!r}; drop one"
            )
        taken[name] = column
        if name != column:
            renames[column] = name
    return renames


def _field_type(name: str, kind: str) -> str:
    if name in STANDARD_FIELDS:
        return STANDARD_FIELDS[name]
    if is_list_field(name):
        return "boolean"
    return kind_type(kind)


def _expand_mailing_lists(frame: pl.DataFrame, source: Source) -> tuple[pl.DataFrame, pl.Expr | None]:
    """Split a ``mailingLists`` JSON column into one ``mailingLists.<id>`` column per list."""
    if MAILING_LISTS not in frame.columns:
        return frame, None
    per_list: dict[str, list[str | None]] = {}
    named_first: dict[str, int] = {}  # the first row naming each list (even as null)
    invalid: list[bool] = []
    values = frame[MAILING_LISTS].to_list()
    for index, text in enumerate(values):
        parsed = _parse_lists(text)
        invalid.append(parsed is None)
        for list_id, member in (parsed or {}).items():
            per_list.setdefault(list_id, [None] * len(values))[index] = member
            named_first.setdefault(list_field(list_id), index)
    new_columns = {list_field(list_id): column for list_id, column in per_list.items()}
    clash = sorted(set(new_columns) & set(frame.columns))
    if clash:
        first = named_first[clash[0]]
        raise InputError(
            f"{source.path}:{source.line_of(frame[ROW][first])}: list {clash[0]!r} is given both in the "
            "mailingLists column and its own column; give it in one place"
        )
    frame = frame.drop(MAILING_LISTS).with_columns(
        pl.Series(LISTS_INVALID, invalid, dtype=pl.Boolean),
        *(pl.Series(name, column, dtype=pl.String) for name, column in new_columns.items()),
    )
    reason = pl.when(pl.col(LISTS_INVALID)).then(
        pl.lit('mailingLists must be a JSON object such as {"listId": true}')
    )
    return frame, reason


def _parse_lists(text: str | None) -> dict[str, str | None] | None:
    if text is None or not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    members: dict[str, str | None] = {}
    for list_id, member in parsed.items():
        if member is None or isinstance(member, bool | str | int):
            members[str(list_id)] = None if member is None else str(member).lower()
        else:
            return None
    return members


def _cleaned(frame: pl.DataFrame, fields: list[str], types: dict[str, str]) -> pl.DataFrame:
    """Trim; an empty cell means no value; emails compare lowercased; booleans lowercased.

    Two passes, so that each column is trimmed once (an expression using the trimmed value twice
    would trim it twice).
    """
    trimmed = frame.with_columns(_trimmed(name, types[name]) for name in fields)
    return trimmed.with_columns(
        pl.when(pl.col(name).str.len_bytes() == 0).then(None).otherwise(pl.col(name)).alias(name) for name in fields
    )


def _trimmed(name: str, type_: str) -> pl.Expr:
    column = pl.col(name).str.strip_chars()
    if name == "email" or type_ == "boolean":
        column = column.str.to_lowercase()
    return column.alias(name)


def _canonical_booleans(fields: list[str], types: dict[str, str]) -> list[pl.Expr]:
    return [
        pl.when(pl.col(name).is_in(list(TRUE_WORDS))).then(pl.lit("true"))
        .when(pl.col(name).is_in(list(FALSE_WORDS))).then(pl.lit("false"))
        .otherwise(pl.col(name)).alias(name)
        for name in fields
        if types[name] == "boolean"
    ]


def _reason(
    fields: list[str], types: dict[str, str], key: KeyField, list_reason: pl.Expr | None, may_hold_nul: bool
) -> pl.Expr:
    """The first reason a row cannot be sent, or null. Order: identity first, then values."""
    checks: list[pl.Expr] = [
        pl.when(pl.col("email").is_null()).then(pl.lit("missing email")),
        _too_long("email"),
        pl.when(~pl.col("email").str.contains(EMAIL_PATTERN)).then(
            message("invalid email syntax: ", shortened(pl.col("email")))
        ),
    ]
    if key == "userId":
        checks += [
            pl.when(pl.col("userId").is_null()).then(pl.lit("missing userId (required by --key userId)")),
            pl.when(pl.col("userId").str.contains(CONTROL_CHARS)).then(pl.lit("userId contains control characters")),
        ]
    if list_reason is not None:
        checks.append(list_reason)
    for name in fields:
        if types[name] == "boolean":
            words = sorted(TRUE_WORDS | FALSE_WORDS)
            checks.append(
                pl.when(pl.col(name).is_not_null() & ~pl.col(name).is_in(words)).then(
                    message(
                        f"{name} value '", shortened(pl.col(name)), "' is not a boolean (use true/false/yes/no/1/0)"
                    )
                )
            )
        if may_hold_nul:
            checks.append(
                pl.when(pl.col(name).str.contains("\x00", literal=True)).then(
                    pl.lit(f"{name} contains a NUL character; remove it from the source")
                )
            )
        checks.append(_too_long(name))
    return pl.coalesce(checks)


def _too_long(name: str) -> pl.Expr:
    length = pl.col(name).str.len_chars()
    return pl.when(length > MAX_STRING_CHARS).then(
        message(f"{name} is ", length, f" characters long; Loops accepts at most {MAX_STRING_CHARS}")
    )


def shortened(value: pl.Expr, limit: int = 80) -> pl.Expr:
    """A value cut to ``limit`` characters for a message (a 10 MB cell must not become a 10 MB line)."""
    return pl.when(value.str.len_chars() > limit).then(value.str.slice(0, limit) + "...").otherwise(value)


def keep_last(
    valid: pl.DataFrame, column: str, key_text: KeyText | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Of the rows sharing a value of ``column``, keep the last. Returns the rows kept and the
    others (``ROW``, ``column``, ``KEY``, ``STATE_ROW`` if ``valid`` has it, and ``WINNER``: the
    last row with their value).

    Rows are screened by a 64-bit hash of the value (much cheaper than comparing strings): if all
    hashes differ, so do the values; otherwise only rows whose hash repeats, true repeats or a rare
    collision, are compared exactly.
    """
    hashed = column == KEY and KEY_HASH in valid.columns
    hashes = valid[KEY_HASH] if hashed else valid.select(plh.col(column).nchash.xxhash64()).to_series()
    narrow = [ROW, *dict.fromkeys(name for name in (column, KEY, STATE_ROW) if name in valid.columns)]
    none = valid.select(narrow).clear().with_columns(
        *([] if KEY in valid.columns else [pl.lit(None, pl.String).alias(KEY)]), pl.lit(None, pl.UInt32).alias(WINNER)
    )
    if hashes.n_unique() == valid.height - max(hashes.null_count() - 1, 0):  # nulls count once in n_unique
        return valid, none
    suspects = valid.select(narrow).filter(hashes.is_duplicated() & hashes.is_not_null())  # not the full rows
    if KEY not in suspects.columns:
        assert key_text is not None, "deduplicate needs KEY or key_text"
        suspects = suspects.with_columns(key_text(suspects).alias(KEY))
    repeats = suspects.filter(pl.col(column).is_duplicated())
    if repeats.height == 0:
        return valid, none
    losers = repeats.with_columns(pl.col(ROW).max().over(column).cast(pl.UInt32).alias(WINNER)).filter(
        pl.col(ROW) != pl.col(WINNER)
    )
    return valid.filter(~pl.col(ROW).is_in(losers[ROW].implode())), losers
