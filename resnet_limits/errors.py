"""Errors for bad user input: the CLI prints their message on one line and exits 2."""


class UsageError(ValueError):
    """Bad input from a user (unknown name, out-of-range value, wrong folder)."""


class DamagedRunError(UsageError):
    """A file of a run folder is damaged or unreadable; the message names it and what to do."""
