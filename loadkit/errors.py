"""One exception tree for loadkit; each class knows its exit code.

    LoadkitError                 exit 3 unless a subclass says otherwise
    ├── UsageError               exit 2  bad command-line input
    │   └── ConfigError          exit 2  bad config file, profile or threshold
    ├── TargetError              exit 3  the target cannot be reached
    ├── DriverError              exit 3  the load engine failed (Locust crashed, would not stop)
    ├── PayloadError             exit 2  a bad webhook payload (the webhook maps it to 400)
    ├── SafetyError              exit 2  a guard refused an action
    └── Interrupted              exit 130 SIGINT/SIGTERM

A verdict of "fail" is a result, not an exception: it exits 1 without passing through here.
Every message says what is wrong and what to do about it.
"""

from __future__ import annotations

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_TARGET = 3
EXIT_INTERRUPTED = 130


class LoadkitError(Exception):
    """Base class: a user-facing message plus the process exit code."""

    exit_code = EXIT_TARGET

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class UsageError(LoadkitError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config file, profile, stage or threshold is invalid.

    `source` names the file (and line) so the message can point at it.
    """

    def __init__(self, message: str, *, hint: str | None = None, source: str | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message, hint=hint)
        self.source = source


class TargetError(LoadkitError):
    exit_code = EXIT_TARGET


class DriverError(LoadkitError):
    exit_code = EXIT_TARGET


class PayloadError(LoadkitError):
    exit_code = EXIT_USAGE


class SafetyError(LoadkitError):
    exit_code = EXIT_USAGE


class Interrupted(LoadkitError):
    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted", *, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.signal_name = signal_name
