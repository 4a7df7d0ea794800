"""Names of the median methods, importable without numba (fanout validates them too)."""

from temporal_median.base.errors import InvalidRequest

METHODS = ("luminance", "per-band")
DEFAULT_METHOD = "luminance"


def check_method(method) -> str:
    """Return ``method`` if it names a median method, else raise InvalidRequest listing them."""
    if not isinstance(method, str) or method not in METHODS:
        raise InvalidRequest(f"unknown median method {method!r}; valid methods are {', '.join(METHODS)}")
    return method
