"""Job ids and input locations: the two checks every part of a job applies to what it is given."""

from __future__ import annotations

import re

from temporal_median.base.errors import InvalidRequest
from temporal_median.base.storage import GsUrl

_JOB_ID = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")


def check_job_id(job_id) -> str:
    """``job_id`` if it is 3 to 63 characters of a-z, 0-9 and '-', else InvalidRequest."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise InvalidRequest(
            f"job_id must be 3 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit; got {job_id!r}"
        )
    return job_id


def check_input_url(url, allow_local: bool) -> str:
    """Validate one input location: gs://, https:// or (locally) an absolute path."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise InvalidRequest(f"an input must be a non-empty string of at most 2048 characters, got {url!r}")
    if url.startswith("gs://"):
        GsUrl.parse(url)
    elif url.startswith("https://"):
        pass
    elif url.startswith("/"):
        if not allow_local:
            raise InvalidRequest(f"local paths are not allowed here (only gs:// and https://): {url!r}")
        if ".." in url.split("/"):
            raise InvalidRequest(f"'..' is not allowed in {url!r}")
    else:
        raise InvalidRequest(
            "inputs must be gs:// or https:// URLs" + (" or absolute paths" if allow_local else "") + f", got {url!r}"
        )
    return url
