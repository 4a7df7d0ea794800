"""The one table of what callers do with each error, and how storage and GDAL failures are classified."""

import pytest
import requests
from google.api_core import exceptions as gexc
from rasterio.errors import RasterioIOError

from temporal_median.base import errors
from temporal_median.base.errors import (
    AttemptsExhausted,
    InputMismatch,
    InputUnreadable,
    InvalidRequest,
    JobConflict,
    JobNotFound,
    MalformedMessage,
    MosaicBusy,
    RequestTooLarge,
    StorageRefused,
    StorageUnavailable,
    TemporalMedianError,
    TransientError,
    policy,
)
from temporal_median.base.storage import GsUrl, classify
from temporal_median.raster.gdal import gdal_error


@pytest.mark.parametrize(
    "exc, status, retry, bug",
    [
        (RequestTooLarge("x"), 413, False, False),
        (JobConflict("x"), 409, False, False),
        (JobNotFound("x"), 404, False, False),
        (InvalidRequest("x"), 400, False, False),
        (MalformedMessage("x"), 400, False, False),
        (InputMismatch("x"), 400, False, False),
        (InputUnreadable("x"), 400, False, False),
        (StorageRefused("x"), 400, False, False),
        (AttemptsExhausted("x"), 400, False, False),
        (StorageUnavailable("x"), 503, True, False),
        (MosaicBusy("x"), 503, True, False),
        (TransientError("x"), 503, True, False),
        (TemporalMedianError("x"), 500, True, False),
        (KeyError("x"), 500, True, True),
        (ZeroDivisionError(), 500, True, True),
    ],
)
def test_each_error_type_has_one_policy(exc, status, retry, bug):
    answer = policy(exc)
    assert (answer.status, answer.retry, answer.bug) == (status, retry, bug)
    assert errors.http_status(exc) == status


def test_foreign_errors_never_leak_their_text():
    assert errors.error_body(KeyError("secret")) == {
        "error": {"code": "internal", "message": "internal error; see the function's logs"}
    }
    assert errors.error_body(JobNotFound("no job x")) == {"error": {"code": "job_not_found", "message": "no job x"}}


BUCKET = GsUrl.parse("gs://in-bucket/series/")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408, 403])
def test_storage_statuses_worth_a_retry_are_transient(status):
    error = classify(gexc.from_http_status(status, "boom"), "listing gs://in-bucket/series/", BUCKET)
    assert isinstance(error, StorageUnavailable) and str(status) in str(error)


def test_a_missing_bucket_or_object_is_permanent_and_names_the_bucket():
    error = classify(gexc.NotFound("The specified bucket does not exist."), "listing gs://in-bucket/series/", BUCKET)
    assert isinstance(error, InputUnreadable) and "in-bucket" in str(error)


@pytest.mark.parametrize("status", [400, 401, 409, 412])
def test_other_storage_statuses_are_refusals_a_retry_repeats(status):
    assert isinstance(classify(gexc.from_http_status(status, "no"), "writing x", BUCKET), StorageRefused)


@pytest.mark.parametrize(
    "exc", [requests.ConnectionError("refused"), requests.Timeout("slow"), ConnectionResetError(), TimeoutError()]
)
def test_connection_failures_are_transient(exc):
    assert isinstance(classify(exc, "reading x", BUCKET), StorageUnavailable)


def test_an_unexpected_exception_is_a_bug_not_a_storage_answer():
    assert classify(ValueError("programming error"), "reading x", BUCKET) is None
    assert classify(AttributeError("x"), "reading x", BUCKET) is None


@pytest.mark.parametrize(
    "url, text, kind",
    [
        ("gs://b/x.tif", "HTTP response code: 503", StorageUnavailable),
        ("/vsigs/b/x.tif", "HTTP response code: 429", StorageUnavailable),
        ("https://h/x.tif", "HTTP response code: 403", StorageUnavailable),
        ("gs://b/x.tif", "HTTP response code: 404", InputUnreadable),
        ("/vsicurl/https://h/x.tif", "HTTP response code: 400", InputUnreadable),
        ("gs://b/x.tif", "IReadBlock failed: got 0 bytes, expected 1234", StorageUnavailable),
        ("gs://b/x.tif", "CURL error: Could not connect to server", StorageUnavailable),
        ("gs://b/x.tif", "not recognized as a supported file format", InputUnreadable),
        ("/data/x.tif", "timed out", InputUnreadable),  # a local file is never "worth a retry"
    ],
)
def test_gdal_failures_are_classified_like_storage_answers(url, text, kind):
    error = gdal_error(RasterioIOError(text), url, "open raster")
    assert type(error) is kind and url in str(error)
