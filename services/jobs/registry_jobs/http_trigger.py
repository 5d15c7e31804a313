"""`POST /internal/<job>`: run a job now and answer when it is done (Cloud Scheduler, curl).

204 when the job completed; 202 with `{"job", "status": "already running"}` when that job was
already running (here or on another replica), so this trigger did nothing; 500 with
`{"error": "job failed", "job": <failing job or runAll step>}`; 401 without the right
`Authorization: Bearer <INTERNAL_SECRET>` (not checked when INTERNAL_SECRET is unset); 404 for
a name that is not a job; 503 while the service shuts down.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from registry_common.http import SETTINGS
from registry_common.jobs.base import JobFailed, JobName, JobOutcome
from registry_jobs.runs import JOB_RUNS, JobInterrupted, JobsClosing, job_context

UNAVAILABLE_HEADERS = {"Retry-After": "5"}


def is_internal_caller(request: web.Request) -> bool:
    """True when the request carries the internal secret as a bearer token (or none is set)."""
    secret = request.app[SETTINGS].internal_secret
    if not secret:
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), secret.encode())


async def trigger_job(request: web.Request) -> web.Response:
    """Run the job named in the path and report how it ended."""
    if not is_internal_caller(request):
        return web.json_response(
            {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    name = request.match_info["job"]
    try:
        job = JobName(name)
    except ValueError:
        return web.json_response({"error": "unknown job", "job": name[:100]}, status=404)
    runs = request.app[JOB_RUNS]
    try:
        outcome = await runs.run(job_context(request.app), job, trigger="http")
    except JobFailed as exc:
        return web.json_response({"error": "job failed", "job": exc.job.value}, status=500)
    except (JobsClosing, JobInterrupted):
        return web.json_response(
            {"error": "shutting down", "job": job.value}, status=503, headers=UNAVAILABLE_HEADERS
        )
    if outcome is JobOutcome.ALREADY_RUNNING:
        return web.json_response({"job": job.value, "status": outcome.value}, status=202)
    return web.Response(status=204)


def add_http_trigger(app: web.Application) -> None:
    """Route `POST /internal/<job>`."""
    app.router.add_post("/internal/{job}", trigger_job)
