"""raylane's errors: one root, a short tree.

```
RaylaneError                 root; ``exit_code`` 1 (an internal error, a bug to report)
└── UserError                something the user can fix; ``exit_code`` 2
    ├── ConfigError          the project config: missing file, unknown key, wrong type, bad override
    ├── DataError            a raw source: missing column, wrong dtype, empty file, broken csv row
    ├── FeatureStoreError    Feast: not applied yet, unknown feature view, unusable backend
    └── ClusterError         Ray: cannot start, cannot connect, a request the cluster can never satisfy
```

Every message names the file, field or value that is wrong and says how to fix it. The CLI prints
the message without a traceback (``--debug`` shows it) and exits with ``exit_code``.
"""

from __future__ import annotations

__all__ = [
    "ClusterError",
    "ConfigError",
    "DataError",
    "FeatureStoreError",
    "RaylaneError",
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
