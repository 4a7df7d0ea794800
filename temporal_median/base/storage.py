"""Object storage: gs:// URLs through google-cloud-storage, with create-only writes and error mapping."""

from __future__ import annotations

import functools
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from temporal_median.base.errors import (
    InputUnreadable,
    InvalidRequest,
    MalformedMessage,
    StorageRefused,
    StorageUnavailable,
    TemporalMedianError,
    is_transient_status,
)

INPUT_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class GsUrl:
    """A ``gs://bucket/key`` location; ``key`` may be empty or a prefix ending in ``/``."""

    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, url: str) -> "GsUrl":
        if not isinstance(url, str) or not url.startswith("gs://"):
            raise InvalidRequest(f"not a gs:// URL: {url!r}")
        bucket, _, key = url[len("gs://") :].partition("/")
        if not bucket or any(c in bucket for c in " \\?#[]*"):
            raise InvalidRequest(f"bad bucket name in {url!r}")
        if ".." in key.split("/"):
            raise InvalidRequest(f"'..' is not allowed in {url!r}")
        return cls(bucket, key)

    def join(self, *parts: str) -> "GsUrl":
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p and p.strip("/"))
        return GsUrl(self.bucket, key)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.key}"


@functools.lru_cache(maxsize=1)
def client():
    """The process's storage client, created on first use (honours STORAGE_EMULATOR_HOST)."""
    from google.cloud import storage as gcs

    return gcs.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)


def classify(exc: BaseException, what: str, url: GsUrl | None = None) -> TemporalMedianError | None:
    """Our error for a storage client failure, as Cloud Storage reports it; None for a bug.

    HTTP statuses go through :func:`temporal_median.base.errors.is_transient_status` (5xx, 429, 408,
    and 403 while IAM propagates: StorageUnavailable); a 404 is InputUnreadable naming the
    bucket; any other status (400, 412 of a plain write...) is StorageRefused. Connection
    failures and timeouts are StorageUnavailable. Anything else is not a storage answer at all
    but a bug: None, and the caller lets it propagate with its traceback.
    """
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from requests import exceptions as req_exc

    if isinstance(exc, TemporalMedianError):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError) and exc.code is not None:
        status = int(exc.code)
        if is_transient_status(status):
            return StorageUnavailable(f"{what}: HTTP {status}, worth a retry: {exc.message}")
        if status == 404:
            where = f" (does bucket {url.bucket} exist?)" if url is not None else ""
            return InputUnreadable(f"{what}: not found{where}: {exc.message}")
        return StorageRefused(f"{what}: HTTP {status}: {exc.message}")
    if isinstance(
        exc,
        (
            req_exc.ConnectionError,
            req_exc.Timeout,
            req_exc.ChunkedEncodingError,
            auth_exc.TransportError,
            gexc.RetryError,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")
    return None


@contextmanager
def _storage_call(what: str, url: GsUrl):
    """Run a client call, raising our error for what storage answered (bugs propagate as they are)."""
    try:
        yield
    except Exception as exc:
        error = classify(exc, what, url)
        if error is None or error is exc:
            raise
        raise error from exc


def _blob(url: GsUrl):
    return client().bucket(url.bucket).blob(url.key)


def read_bytes(url: GsUrl) -> bytes | None:
    """The object's bytes, or None if it does not exist."""
    from google.api_core import exceptions as gexc

    with _storage_call(f"reading {url}", url):
        try:
            return _blob(url).download_as_bytes()
        except gexc.NotFound:
            return None


def read_json(url: GsUrl):
    """The object parsed as JSON, or None if it does not exist."""
    data = read_bytes(url)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        # Objects are written whole: reading it again would give the same bytes.
        raise MalformedMessage(f"{url} is not valid JSON: {exc}") from exc


def read_json_generation(url: GsUrl) -> tuple[object, int] | None:
    """The object parsed as JSON with the generation those bytes belong to; None if it does not
    exist (or was replaced between the two requests: the caller sees it as gone and retries)."""
    from google.api_core import exceptions as gexc

    with _storage_call(f"reading {url}", url):
        blob = client().bucket(url.bucket).get_blob(url.key)
        if blob is None:
            return None
        try:
            data = client().bucket(url.bucket).blob(url.key, generation=blob.generation).download_as_bytes()
        except gexc.NotFound:
            return None
    try:
        return json.loads(data), int(blob.generation)
    except ValueError as exc:
        raise MalformedMessage(f"{url} is not valid JSON: {exc}") from exc


def exists(url: GsUrl) -> bool:
    """True if the object exists."""
    with _storage_call(f"checking {url}", url):
        return _blob(url).exists()


def _upload(url: GsUrl, content_type: str, *, data: bytes | None = None, path: str | None = None,
            metadata=None, if_generation_match: int | None = None) -> int | None:
    """Upload bytes or a local file; the new object's generation, None if the precondition failed.

    An object appears whole or not at all; ``if_generation_match=0`` makes the write create-only.
    """
    from google.api_core import exceptions as gexc

    blob = _blob(url)
    if metadata:
        blob.metadata = metadata
    with _storage_call(f"writing {url}", url):
        try:
            if path is not None:
                blob.upload_from_filename(path, content_type=content_type, if_generation_match=if_generation_match)
            else:
                blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match)
            return int(blob.generation)
        except gexc.PreconditionFailed:
            if if_generation_match is None:
                raise  # not ours to expect: StorageRefused
            return None


def _json_bytes(value) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()


def create_bytes(url: GsUrl, data: bytes, content_type: str = "application/octet-stream", metadata=None) -> bool:
    """Write an object only if it does not exist yet (ifGenerationMatch=0).

    Returns True if this call created it, False if it already existed.
    """
    return _upload(url, content_type, data=data, metadata=metadata, if_generation_match=0) is not None


def create_json(url: GsUrl, value) -> bool:
    """Create-only JSON write; see :func:`create_bytes`."""
    return create_bytes(url, _json_bytes(value), "application/json")


def create_file(url: GsUrl, path: str, content_type: str, metadata=None) -> bool:
    """Upload a local file only if the object does not exist; see :func:`create_bytes`."""
    return _upload(url, content_type, path=path, metadata=metadata, if_generation_match=0) is not None


def put_file(url: GsUrl, path: str, content_type: str) -> None:
    """Upload a local file, replacing any object of that name (results a re-run rebuilds)."""
    _upload(url, content_type, path=path)


def put_json(url: GsUrl, value) -> None:
    """Write JSON, replacing any object of that name."""
    _upload(url, "application/json", data=_json_bytes(value))


def generation(url: GsUrl) -> int | None:
    """The object's generation, or None if it does not exist."""
    with _storage_call(f"reading {url}", url):
        blob = client().bucket(url.bucket).get_blob(url.key)
    return None if blob is None else blob.generation


def create_json_generation(url: GsUrl, value) -> int | None:
    """Create-only JSON write returning the new object's generation; None if it already existed."""
    return _upload(url, "application/json", data=_json_bytes(value), if_generation_match=0)


def replace_json_if_generation(url: GsUrl, value, generation_: int) -> int | None:
    """Overwrite an object only if it still has ``generation_``: its new generation, or None if
    someone else changed it meanwhile."""
    return _upload(url, "application/json", data=_json_bytes(value), if_generation_match=generation_)


def delete(url: GsUrl, if_generation: int | None = None) -> bool:
    """Delete an object; False if it was already gone (or had another generation)."""
    from google.api_core import exceptions as gexc

    with _storage_call(f"deleting {url}", url):
        try:
            _blob(url).delete(if_generation_match=if_generation)
            return True
        except (gexc.NotFound, gexc.PreconditionFailed):
            return False


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing tells about one object."""

    url: GsUrl
    size: int
    metadata: dict


def list_objects(prefix: GsUrl) -> Iterator[ObjectInfo]:
    """Objects whose name starts with the prefix, sorted by name."""
    with _storage_call(f"listing {prefix}", prefix):
        blobs = list(client().list_blobs(prefix.bucket, prefix=prefix.key or None))
    for blob in sorted(blobs, key=lambda b: b.name):
        yield ObjectInfo(GsUrl(prefix.bucket, blob.name), int(blob.size or 0), dict(blob.metadata or {}))


def download_file(url: GsUrl, path: str) -> None:
    """Copy an object to a local file (written beside it, then renamed into place)."""
    tmp = f"{path}.part-{os.getpid()}"
    try:
        with _storage_call(f"downloading {url}", url):
            _blob(url).download_to_filename(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
