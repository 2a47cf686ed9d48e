"""raylane's errors: one root, a short tree.

```
RaylaneError                 root; ``exit_code`` 1 (an internal error, a bug to report)
├── PipelineFailed           a `raylane run` step failed; carries the step's result and exit code
└── UserError                something the user can fix; ``exit_code`` 2
    ├── ConfigError          the project config: missing file, unknown key, wrong type, bad override
    ├── DataError            a raw source: missing column, wrong dtype, empty file, broken csv row
    ├── FeatureStoreError    Feast: not applied yet, unknown feature view, unusable backend
    ├── ClusterError         Ray: cannot start, cannot connect, a request the cluster can never satisfy
    ├── RegistryError        MLflow registry: unknown model, version or alias, nothing to roll back
    ├── ServeError           serving cannot start or be reached as configured
    └── SweepInterrupted     Ctrl-C before every trial ended; ``exit_code`` 130, resumable
```

HTTP errors of the serving API (``serving.api.ApiError``) are not in this tree: they are answers
to one request (a status code and a detail), never raised out of raylane.

Every message names the file, field or value that is wrong and says how to fix it. The CLI prints
the message without a traceback (``--debug`` shows it) and exits with ``exit_code``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "FeatureStoreError",
    "PipelineFailed",
    "RaylaneError",
    "RegistryError",
    "ServeError",
    "SweepInterrupted",
    "UserError",
]


class RaylaneError(Exception):
    """Root of raylane's errors. Raised directly, it marks an internal error (exit code 1)."""

    exit_code: int = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross Ray task boundaries; keep the keyword-only ``fix`` through pickling.
        return (_rebuild, (type(self), self.message, self.fix))


def _rebuild(cls: type[RaylaneError], message: str, fix: str | None) -> RaylaneError:
    return cls(message, fix=fix)


class UserError(RaylaneError):
    """Something the user can fix: bad input, bad config, a missing prerequisite (exit code 2)."""

    exit_code = 2


class ConfigError(UserError):
    """The project config is missing, malformed, or has a field with a bad value."""


class DataError(UserError):
    """A raw data source does not match what the config declares."""


class FeatureStoreError(UserError):
    """The Feast feature store cannot do what was asked (not applied, unknown view, backend missing)."""


class ClusterError(UserError):
    """Ray cannot be started or reached, or a request can never be satisfied by the cluster."""


class RegistryError(UserError):
    """A registry request that cannot be done: unknown model, version or alias, nothing to roll back."""


class ServeError(UserError):
    """Serving cannot start or be reached as configured."""


class SweepInterrupted(UserError):
    """The sweep was interrupted (Ctrl-C) before every trial ended; it can be resumed."""

    exit_code = 130


class PipelineFailed(RaylaneError):
    """A step failed; ``result`` (a ``PipelineResult``) says which steps ran; the exit code is the step error's."""

    def __init__(self, message: str, *, fix: str | None, result: Any, exit_code: int) -> None:
        super().__init__(message, fix=fix)
        self.result = result
        self.exit_code = exit_code
