"""One exception tree for loadkit; each class knows its exit code.

    LoadkitError                 exit 3 unless a subclass says otherwise
    ├── UsageError               exit 2  bad command-line input
    │   └── ConfigError          exit 2  bad config file, profile or threshold
    ├── TargetError              exit 3  the target cannot be reached
    ├── DriverError              exit 3  the load engine failed (Locust crashed, would not stop)
    ├── PayloadError             exit 2  a bad webhook payload                  (webhook: 400)
    │   └── TooLargeError        exit 2  a request body over the limit           (webhook: 413)
    ├── SafetyError              exit 2  a guard refused an action               (webhook: 403)
    ├── NotFoundError            exit 2  no such run / hook kind                 (webhook: 404)
    ├── NotReadyError            exit 2  it exists but is not there yet          (webhook: 409)
    ├── AuthError                exit 2  missing or wrong credentials            (webhook: 401/403)
    ├── BusyError                exit 3  too much work at once, retry later      (webhook: 429)
    ├── StoreError               exit 3  the database cannot be opened, read or written
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


class TooLargeError(PayloadError):
    pass


class SafetyError(LoadkitError):
    exit_code = EXIT_USAGE


class NotFoundError(LoadkitError):
    exit_code = EXIT_USAGE


class NotReadyError(LoadkitError):
    exit_code = EXIT_USAGE


class AuthError(LoadkitError):
    """`configured=False`: the endpoint is disabled because no credentials are configured."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, configured: bool = True) -> None:
        super().__init__(message)
        self.configured = configured


class BusyError(LoadkitError):
    exit_code = EXIT_TARGET

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class StoreError(LoadkitError):
    """The loadkit database (history, the webhook's state) cannot be opened, read or written."""

    exit_code = EXIT_TARGET


class Interrupted(LoadkitError):
    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str = "interrupted", *, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.signal_name = signal_name
