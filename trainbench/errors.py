"""Exceptions that map to the CLI's exit codes (2: bad input, 1: a run failed)."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the user (recipe, command line, missing data files): exit code 2.

    The message is shown to the user as is, so it must name the file or field and the fix.
    """


class DataMissingError(InputError):
    """A dataset's files are not where the recipe says, and downloading is off or impossible."""
