"""fanout (HTTP): POST starts a job, GET reports its status, DELETE cancels it."""

import re

import flask
import functions_framework

from temporal_median.base.errors import InvalidRequest, RequestTooLarge, error_body, policy
from temporal_median.base.logs import get_logger
from temporal_median.base.settings import get_settings
from temporal_median.functions.fanout import cancel_job, job_status, plan_request, start_job
from temporal_median.job.ids import check_job_id
from temporal_median.job.request import JobRequest

log = get_logger("temporal_median.fanout")
_JOB_PATH = re.compile(r"^/jobs/([^/]+)/?$")


def _job_id(request: flask.Request) -> str:
    match = _JOB_PATH.match(request.path)
    job_id = match.group(1) if match else request.args.get("job_id")
    if not job_id:
        raise InvalidRequest("name the job: /jobs/<job_id> or ?job_id=<job_id>")
    return check_job_id(job_id)


def _body(request: flask.Request, limit: int):
    if request.content_length is None or request.content_length > limit:
        raise RequestTooLarge(f"the request body must have a Content-Length of at most {limit} bytes")
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidRequest("the request body must be JSON (Content-Type: application/json)")
    return body


@functions_framework.http
def fanout(request: flask.Request):
    settings = get_settings()
    try:
        if request.method == "POST" and request.path in ("/", "/jobs", "/jobs/"):
            job = JobRequest.from_json(_body(request, settings.max_request_bytes), settings)
            if job.dry_run:
                return plan_request(job, settings), 200
            return start_job(job, settings).to_dict(settings), 202
        if request.method == "GET" and request.path not in ("/favicon.ico",):
            return job_status(_job_id(request), settings), 200
        if request.method == "DELETE":
            return cancel_job(_job_id(request), settings), 200
        return error_body(InvalidRequest(f"{request.method} {request.path} is not supported")), 405
    except Exception as exc:  # noqa: BLE001 - the policy table decides; internals never leak
        answer = policy(exc)
        if answer.bug:
            log.exception(f"unexpected error: {type(exc).__name__}")
        else:
            log.log(40 if answer.status >= 500 else 30, f"request refused: {exc}", extra={"code": exc.code})
        return error_body(exc), answer.status
