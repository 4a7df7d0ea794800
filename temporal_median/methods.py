"""Names of the median methods, importable without numba (fanout validates them too)."""

from .errors import InvalidRequest

METHODS = ("luminance", "per-band")
DEFAULT_METHOD = "luminance"


def check_method(method) -> str:
    """Return ``method`` if it names a median method, else raise InvalidRequest listing them."""
    if method not in METHODS:
        raise InvalidRequest(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    return method
