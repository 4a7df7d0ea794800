"""The project's exceptions: one base, permanent vs transient, small named subclasses."""


class TemporalMedianError(Exception):
    """Base of every error the core raises on purpose."""

    #: Machine-readable code, used in JSON error bodies and error records.
    code = "error"


class PermanentError(TemporalMedianError):
    """Retrying cannot help: bad input, a malformed message, mismatched rasters."""

    code = "permanent"


class TransientError(TemporalMedianError):
    """Retrying may help: network trouble, a 5xx or a 429 from storage."""

    code = "transient"


class InvalidRequest(PermanentError):
    """A request or parameter is malformed or out of range."""

    code = "invalid_request"


class RequestTooLarge(InvalidRequest):
    """A request exceeds a configured limit (body size, number of inputs)."""

    code = "request_too_large"


class MalformedMessage(PermanentError):
    """A Pub/Sub message or CloudEvent cannot be decoded into what it should carry."""

    code = "malformed_message"


class InputMismatch(PermanentError):
    """An input raster does not match the others (bands, dtype, size, transform, CRS)."""

    code = "input_mismatch"


class InputUnreadable(PermanentError):
    """An input raster cannot be opened or read (missing, not a raster, corrupt)."""

    code = "input_unreadable"


class NoInputs(InvalidRequest):
    """An input location holds no raster to combine."""

    code = "no_inputs"


class JobNotFound(PermanentError):
    """No job with this id has a manifest."""

    code = "job_not_found"


class StorageUnavailable(TransientError):
    """Storage answered with an error worth retrying, or could not be reached."""

    code = "storage_unavailable"


class JobConflict(InvalidRequest):
    """A job id is already used by a job with other inputs or parameters."""

    code = "job_conflict"


#: HTTP status for each error type, most specific first; the one table the HTTP layer uses.
HTTP_STATUS: tuple[tuple[type, int], ...] = (
    (RequestTooLarge, 413),
    (JobConflict, 409),
    (JobNotFound, 404),
    (PermanentError, 400),
    (TransientError, 503),
    (TemporalMedianError, 500),
)


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception (500 for anything that is not ours)."""
    for kind, status in HTTP_STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_body(exc: BaseException) -> dict:
    """The JSON error body: {"error": {"code", "message"}}; internals of foreign errors are not leaked."""
    if isinstance(exc, TemporalMedianError):
        return {"error": {"code": exc.code, "message": str(exc)}}
    return {"error": {"code": "internal", "message": "internal error; see the function's logs"}}
