"""The project's exceptions, and the one table saying what each caller does with each of them."""

from __future__ import annotations

from dataclasses import dataclass


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


class GridMismatch(InputMismatch):
    """A 3-band uint8 scene on another grid (size, transform or CRS) than the reference.

    Where a job names no output grid, fanout takes it as the sign of an area over several
    tiles and composites onto a grid of its own instead of refusing.
    """

    code = "input_mismatch"


class InputUnreadable(PermanentError):
    """An input raster or location cannot be read (missing object or bucket, not a raster, corrupt)."""

    code = "input_unreadable"


class NoInputs(InvalidRequest):
    """An input location holds no raster to combine."""

    code = "no_inputs"


class JobNotFound(PermanentError):
    """No job with this id has a manifest."""

    code = "job_not_found"


class JobConflict(InvalidRequest):
    """A job id is already used by a job with other inputs or parameters."""

    code = "job_conflict"


class StorageRefused(PermanentError):
    """Storage refused a request in a way a retry repeats (400, 412 of a plain write, ...)."""

    code = "storage_refused"


class StorageUnavailable(TransientError):
    """Storage answered with an error worth retrying, or could not be reached."""

    code = "storage_unavailable"


class MosaicBusy(TransientError):
    """Another invocation holds a live mosaic lock: retry later (it may die before finishing)."""

    code = "mosaic_busy"


class AttemptsExhausted(PermanentError):
    """A window failed on every attempt it was allowed; the last error is in the message."""

    code = "attempts_exhausted"


@dataclass(frozen=True)
class Policy:
    """What a caller does with an error: the HTTP status fanout answers, and whether a
    Pub/Sub or Eventarc delivery is retried (a non-2xx answer) or acknowledged."""

    status: int
    retry: bool
    #: An error nobody raised on purpose: logged with its traceback as a bug.
    bug: bool = False


#: The one table: each exception type, most specific first, and what its callers do with it.
POLICIES: tuple[tuple[type, Policy], ...] = (
    (RequestTooLarge, Policy(413, retry=False)),
    (JobConflict, Policy(409, retry=False)),
    (JobNotFound, Policy(404, retry=False)),
    (PermanentError, Policy(400, retry=False)),
    (TransientError, Policy(503, retry=True)),
    (TemporalMedianError, Policy(500, retry=True)),
    # Anything else is a bug: answered 500 and retried, since a redeployed fix can succeed.
    (BaseException, Policy(500, retry=True, bug=True)),
)


def policy(exc: BaseException) -> Policy:
    """The :class:`Policy` of an exception, from :data:`POLICIES`."""
    for kind, found in POLICIES:
        if isinstance(exc, kind):
            return found
    raise AssertionError("unreachable: BaseException matches everything")


def http_status(exc: BaseException) -> int:
    """The HTTP status for an exception (500 for anything that is not ours)."""
    return policy(exc).status


#: HTTP statuses of a storage service that a retry can cure (Cloud Storage's retry strategy:
#: 408, 429 and 5xx). 403 too: IAM grants take minutes to propagate after `terraform apply`.
TRANSIENT_HTTP_STATUSES = frozenset({403, 408, 429})


def is_transient_status(status: int) -> bool:
    """True if an HTTP status from storage is worth a retry (see TRANSIENT_HTTP_STATUSES)."""
    return status >= 500 or status in TRANSIENT_HTTP_STATUSES


def error_body(exc: BaseException) -> dict:
    """The JSON error body: {"error": {"code", "message"}}; internals of foreign errors are not leaked."""
    if isinstance(exc, TemporalMedianError):
        return {"error": {"code": exc.code, "message": str(exc)}}
    return {"error": {"code": "internal", "message": "internal error; see the function's logs"}}


def describe(exc: BaseException) -> str:
    """A one-line description for logs and error records: our message, or the foreign type and message."""
    return str(exc) if isinstance(exc, TemporalMedianError) else f"{type(exc).__name__}: {exc}"
