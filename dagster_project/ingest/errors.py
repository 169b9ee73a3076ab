"""The error the importer raises when a file cannot be loaded at all."""

from __future__ import annotations


class ContractError(ValueError):
    """A source file does not meet the source contract as a whole (for example a
    required column is missing), so nothing is imported.

    Row-level problems never raise: those rows go to `raw.raw_quarantine`.
    `problems` holds one message per broken file.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))
