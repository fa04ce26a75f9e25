"""Errors a user of alcsdb can act on. The CLI prints them as one line (no traceback unless --debug)."""


class AlcsdbError(RuntimeError):
    """Base class: the message is complete and names the file, value or setting at fault."""


class ConfigError(AlcsdbError):
    """A setting is missing or points nowhere; the message says what to set."""


class DatabaseError(AlcsdbError):
    """The database cannot be reached or is not in the expected state."""


class InputError(AlcsdbError):
    """A bad input file or value: the message names the file and the problem."""
