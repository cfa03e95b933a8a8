"""Errors every adapter reports the same way (the command line maps them to exit codes)."""


class UserError(Exception):
    """A refusal to report in one line (exit code 1): bad input or a rule the operator broke."""


class Unavailable(Exception):
    """A service the command needs is not there (a full disk, for one): exit code 3, one line."""


class ShardsFailed(Exception):
    """A distributed run's workers did not decide every shard (nothing of the run is stored)."""


class BrokerUnavailable(ShardsFailed):
    """The broker or the workers cannot be reached (a service unavailable, exit code 3)."""


def unavailable(error: BaseException) -> str | None:
    """Why a failure means a service the command needs is missing (a full disk, for one), in one
    line; None when it does not. Looks through the chain of causes (a driver's error inside
    SQLAlchemy's)."""
    import errno

    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full (no space left on device)"
        text = str(error).lower()
        if "database or disk is full" in text or "no space left on device" in text or "could not extend file" in text:
            return "the disk is full (no space left on device)"
        if getattr(error, "sqlstate", None) == "53100":  # PostgreSQL disk_full
            return "the database server's disk is full"
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
        seen += 1
    return None


DRIVERS = ("psycopg", "sqlite3", "adbc_driver_manager")  # the modules whose errors are database errors


def database_error(error: BaseException) -> str | None:
    """A database error in one line that is safe to print and log: the driver's error type, its code
    (PostgreSQL's SQLSTATE, SQLite's error name) and the constraint it names, never the driver's
    text, which can quote the value it refused (a client's data). None for any other error. A
    database error is SQLAlchemy's DBAPIError or a driver's own (the bulk reads and writes raise those;
    SQLite's bulk writes go through the ADBC driver)."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(error, DBAPIError) and type(error).__module__.split(".")[0] not in DRIVERS:
        return None
    orig = getattr(error, "orig", None) or error
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    constraint = getattr(getattr(orig, "diag", None), "constraint_name", None)
    return (type(orig).__name__ + (f" ({code})" if code else "")
            + (f" on constraint {constraint}" if constraint else ""))
