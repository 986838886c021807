"""Errors that name the file or parameter at fault and what was expected."""


class SpanlibError(Exception):
    """Base class: anything spanlib reports to a user as a clear message, not a traceback."""


class DataError(SpanlibError, ValueError):
    """Bad input data: a missing or unreadable file, a wrong number of points, non-finite values."""


class ParamError(SpanlibError, ValueError):
    """An impossible or unknown parameter."""


class DivergedError(SpanlibError, FloatingPointError):
    """Training produced a NaN or infinite loss or weights: it stops, naming the step and the last
    good checkpoint, instead of writing weights nobody can use."""
