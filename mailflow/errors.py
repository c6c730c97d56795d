"""Typed errors: every failure a person can act on has its own class."""

from __future__ import annotations


class MailflowError(Exception):
    """Root of every error mailflow raises on purpose."""


class ConfigError(MailflowError):
    """The configuration is unusable; ``problems`` lists every reason at once."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        what = "1 problema" if count == 1 else f"{count} problemas"
        super().__init__(f"{source}: {what} en la configuración:\n{lines}")


class ArchiveError(MailflowError):
    """The archive cannot take a file (disk full, permissions): stop taking new mail."""
