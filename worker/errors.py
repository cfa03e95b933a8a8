"""Errors every adapter reports the same way (the command line maps them to exit codes)."""


class UserError(Exception):
    """A refusal to report in one line (exit code 1): bad input or a rule the operator broke."""


class Unavailable(Exception):
    """A service the command needs is not there (a full disk, for one): exit code 3, one line."""
