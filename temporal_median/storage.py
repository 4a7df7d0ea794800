"""Object storage: gs:// URLs through google-cloud-storage, with create-only writes and error mapping."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Iterator

from .errors import InvalidRequest, StorageUnavailable, TemporalMedianError

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


_client_lock = threading.Lock()
_client = None


def client():
    """The process's storage client, created on first use (honours STORAGE_EMULATOR_HOST)."""
    global _client
    with _client_lock:
        if _client is None:
            from google.cloud import storage as gcs

            _client = gcs.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT") or None)
        return _client


def _translate(exc: Exception, what: str) -> TemporalMedianError:
    """Map a client exception to ours: 5xx, 429, 403 and connection trouble are worth a retry."""
    from google.api_core import exceptions as gexc

    # 403 counts as transient: IAM grants take minutes to propagate after `terraform apply`,
    # and a retried message ends in the dead-letter topic rather than being dropped.
    if isinstance(exc, (gexc.ServerError, gexc.TooManyRequests, gexc.Forbidden)):
        return StorageUnavailable(f"{what}: {exc}")
    if isinstance(exc, gexc.GoogleAPICallError):
        return StorageUnavailable(f"{what}: unexpected answer {exc}")
    return StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")


def _blob(url: GsUrl):
    return client().bucket(url.bucket).blob(url.key)


def read_bytes(url: GsUrl) -> bytes | None:
    """The object's bytes, or None if it does not exist."""
    from google.api_core import exceptions as gexc

    try:
        return _blob(url).download_as_bytes()
    except gexc.NotFound:
        return None
    except Exception as exc:  # noqa: BLE001 - mapped to our transient error
        raise _translate(exc, f"reading {url}") from exc


def read_json(url: GsUrl):
    """The object parsed as JSON, or None if it does not exist."""
    data = read_bytes(url)
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StorageUnavailable(f"{url} is not valid JSON: {exc}") from exc


def exists(url: GsUrl) -> bool:
    try:
        return _blob(url).exists()
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, f"checking {url}") from exc


def _upload(url: GsUrl, content_type: str, *, data: bytes | None = None, path: str | None = None,
            metadata=None, if_generation_match: int | None = None) -> bool:
    """Upload bytes or a local file; False if the generation precondition failed.

    An object appears whole or not at all; ``if_generation_match=0`` makes the write create-only.
    """
    from google.api_core import exceptions as gexc

    blob = _blob(url)
    if metadata:
        blob.metadata = metadata
    try:
        if path is not None:
            blob.upload_from_filename(path, content_type=content_type, if_generation_match=if_generation_match)
        else:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=if_generation_match)
        return True
    except gexc.PreconditionFailed:
        return False
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, f"writing {url}") from exc


def _json_bytes(value) -> bytes:
    return json.dumps(value, indent=1, sort_keys=True).encode()


def create_bytes(url: GsUrl, data: bytes, content_type: str = "application/octet-stream", metadata=None) -> bool:
    """Write an object only if it does not exist yet (ifGenerationMatch=0).

    Returns True if this call created it, False if it already existed.
    """
    return _upload(url, content_type, data=data, metadata=metadata, if_generation_match=0)


def create_json(url: GsUrl, value) -> bool:
    """Create-only JSON write; see :func:`create_bytes`."""
    return create_bytes(url, _json_bytes(value), "application/json")


def create_file(url: GsUrl, path: str, content_type: str, metadata=None) -> bool:
    """Upload a local file only if the object does not exist; see :func:`create_bytes`."""
    return _upload(url, content_type, path=path, metadata=metadata, if_generation_match=0)


def put_file(url: GsUrl, path: str, content_type: str) -> None:
    """Upload a local file, replacing any object of that name (results a re-run rebuilds)."""
    _upload(url, content_type, path=path)


def put_json(url: GsUrl, value) -> None:
    """Write JSON, replacing any object of that name."""
    _upload(url, "application/json", data=_json_bytes(value))


def generation(url: GsUrl) -> int | None:
    """The object's generation, or None if it does not exist."""
    try:
        blob = client().bucket(url.bucket).get_blob(url.key)
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, f"reading {url}") from exc
    return None if blob is None else blob.generation


def replace_json_if_generation(url: GsUrl, value, generation_: int) -> bool:
    """Overwrite an object only if it still has ``generation_``; False if someone else changed it."""
    return _upload(url, "application/json", data=_json_bytes(value), if_generation_match=generation_)


def delete(url: GsUrl, if_generation: int | None = None) -> bool:
    """Delete an object; False if it was already gone (or had another generation)."""
    from google.api_core import exceptions as gexc

    try:
        _blob(url).delete(if_generation_match=if_generation)
        return True
    except (gexc.NotFound, gexc.PreconditionFailed):
        return False
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, f"deleting {url}") from exc


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing tells about one object."""

    url: GsUrl
    size: int
    metadata: dict


def list_objects(prefix: GsUrl) -> Iterator[ObjectInfo]:
    """Objects whose name starts with the prefix, sorted by name."""
    try:
        blobs = list(client().list_blobs(prefix.bucket, prefix=prefix.key or None))
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, f"listing {prefix}") from exc
    for blob in sorted(blobs, key=lambda b: b.name):
        yield ObjectInfo(GsUrl(prefix.bucket, blob.name), int(blob.size or 0), dict(blob.metadata or {}))


def download_file(url: GsUrl, path: str) -> None:
    """Copy an object to a local file (written beside it, then renamed into place)."""
    tmp = f"{path}.part-{os.getpid()}"
    try:
        _blob(url).download_to_filename(tmp)
        os.replace(tmp, path)
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, f"downloading {url}") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
