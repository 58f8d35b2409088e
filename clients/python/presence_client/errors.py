"""Errors from the server, with their SQLSTATE."""

import psycopg


class PresenceError(Exception):
    """A call the server refused or could not run: .sqlstate (e.g. '22023'
    for a bad value, '42501' for another role's worker, '08006' when the
    connection was lost) and .message (the server's)."""

    def __init__(self, sqlstate, message):
        super().__init__(f"{sqlstate}: {message}" if sqlstate else message)
        self.sqlstate = sqlstate
        self.message = message

    @classmethod
    def of(cls, e):
        if isinstance(e, psycopg.Error):
            diag = getattr(e, "diag", None)
            msg = (diag and diag.message_primary) or str(e).strip()
            return cls(e.sqlstate or ("08006" if isinstance(e, psycopg.OperationalError) else None), msg)
        return cls(None, str(e))
