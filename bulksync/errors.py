"""One exception tree, each branch carrying the exit status the CLI maps it to."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ROWS_FAILED = 1
    USAGE = 2
    DELETE_GUARD = 3
    AUTH = 4
    INTERRUPTED = 130
    TERMINATED = 143


class BulksyncError(Exception):
    """Root of every error bulksync raises on purpose; its message is one line meant for a person."""

    exit_status = ExitStatus.USAGE

    def __init__(self, message: str) -> None:
        super().__init__(printable(message))


def printable(text: str) -> str:
    """Escape control characters and line breaks (from file names, headers, values) to keep one line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class ConfigError(BulksyncError):
    """Flags, environment or mapping that cannot work; nothing was sent."""


class InputError(BulksyncError):
    """The source file cannot be read as a whole; nothing was sent."""


class StateError(BulksyncError):
    """The state file is missing, corrupt, locked or of the wrong kind; nothing was sent."""


class StateLostError(StateError):
    """The state's database connection, and with it the run lock, went away mid-run: the run stopped
    sending at once; what was in flight is settled by the next run."""

    exit_status = ExitStatus.ROWS_FAILED


class GuardError(BulksyncError):
    """A guard refused the whole run (it looked like a broken export); nothing was sent."""

    exit_status = ExitStatus.DELETE_GUARD


class DeleteGuardError(GuardError):
    """The run would delete more contacts than allowed; nothing was sent."""


class ClearGuardError(GuardError):
    """The run would clear a field for more contacts than allowed; nothing was sent."""


class AuthError(BulksyncError):
    """Loops refused the API key (401/403); the run stops at once."""

    exit_status = ExitStatus.AUTH


class Interrupted(BulksyncError):
    """SIGINT or SIGTERM arrived; the run stopped after finishing what was in flight."""

    def __init__(self, message: str, exit_status: ExitStatus = ExitStatus.INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class ApiError(BulksyncError):
    """A Loops response that was not a success, for one request."""

    exit_status = ExitStatus.ROWS_FAILED

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetriableError(ApiError):
    """Worth trying again: 429, 5xx, timeouts and dropped connections."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class RateLimited(RetriableError):
    """429: over the team's rate limit."""


class NotSent(ApiError):
    """The run was stopping, so this action's request was never sent."""


class RejectedError(ApiError):
    """A 4xx other than 401/403/429: this row is wrong as sent and retrying will not help."""


class ConflictError(RejectedError):
    """409 on create: the email or userId already exists in Loops."""


class NotFoundError(RejectedError):
    """404: the contact (or endpoint) does not exist."""
