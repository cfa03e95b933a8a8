"""The HTTP service (SPEC section 9): upstream systems post claim files and read their batches back.

Every answer is JSON; every error is an RFC 9457 problem (`application/problem+json`). Requests
carry `Authorization: Bearer TOKEN` (a submitter's, worker.submitters); one without a valid token
is answered 401 and audited without the token (at most once every ADJUDICATION_HTTP_REFUSED_AUDIT_SECONDS,
submitters.RefusedRequests). A submitter sees only the batches it posted (404 for
any other, so ids cannot be probed). Posting goes through the same use case as `adjudicate submit`
(worker.service.submit) and answers with the same acknowledgement as `adjudicate ack`.

Logs carry the method, the path, the status and the time taken, never a query, a header or a body.
"""


import logging
import time
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.to_thread
import polars as pl
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from adjudication.claim_file import ClaimFile, ClaimFileError, detect_format, label
from worker import intake, service, submitters
from worker.bootstrap import App, build
from worker.exports import outcomes_for_json, safe_for_spreadsheets
from worker.http.upload import GZIP_MAGIC, MULTIPART_OVERHEAD, UploadRefused, receive
from worker.submitters import Submitter

log = logging.getLogger("adjudication.http")

PROBLEM = "application/problem+json"
# Content types a raw body may carry, by the format its file name gives (any format may also come as
# application/octet-stream or application/gzip, or with no Content-Type at all).
CONTENT_TYPES = {
    "csv": {"text/csv", "application/csv", "text/plain"},
    "jsonl": {"application/x-ndjson", "application/jsonl", "application/json-lines", "application/x-jsonlines",
              "application/json"},
    "parquet": {"application/vnd.apache.parquet", "application/x-parquet"},
}
ANY_FORMAT = {"", "application/octet-stream", "application/gzip", "application/x-gzip"}
MAX_KEY_LENGTH = 255
FOREIGN_LINES_SHOWN = 20


class Problem(Exception):
    """An RFC 9457 problem detail: answered as application/problem+json."""

    def __init__(self, status: int, title: str, detail: str = "", headers: dict | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers, self.extra = status, title, detail, headers, extra


def problem_response(status: int, title: str, detail: str = "", headers: dict | None = None, **extra) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, **({"detail": detail} if detail else {}), **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class ForeignProviders(service.UserError):
    """A posted file holds claims of providers its submitter may not post for."""

    def __init__(self, name: str, lines: list[int]):
        shown = ", ".join(map(str, lines[:FOREIGN_LINES_SHOWN]))
        more = f" and {len(lines) - FOREIGN_LINES_SHOWN} more" if len(lines) > FOREIGN_LINES_SHOWN else ""
        super().__init__(f"{label(name)}: {len(lines)} lines bill providers this submitter may not post for "
                         f"(provider_id on line {shown}{more}); nothing was stored")
        self.lines = lines


def providers_vet(submitter: Submitter, name: str):
    """The whole file is refused when any line bills another provider: posting for a provider one
    is not registered for is an authorization failure, not a data error of one line."""

    def vet(claim_file: ClaimFile) -> None:
        provider = pl.col("provider_id").str.strip_chars()
        foreign = claim_file.rows.filter(provider.is_not_null() & (provider != "")
                                         & ~provider.is_in(sorted(submitter.providers)))
        if foreign.height:
            raise ForeignProviders(name, foreign.get_column("line").to_list())

    return vet


class AccessLog:
    """Pure ASGI middleware: one log line per request (method, path, status, milliseconds), and any
    unhandled error answered 500 and logged by its type only (an exception's text may quote data)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive_, send):
        if scope["type"] != "http":
            return await self.app(scope, receive_, send)
        started = time.monotonic()
        status = {"code": 500, "sent": False}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive_, sending)
        except Exception as error:  # noqa: BLE001 - answered, and logged without its text
            log.error("%s failed: %s", shown_request(scope["method"], scope["path"]), type(error).__name__)
            if not status["sent"]:
                await problem_response(500, "Internal error", "the request failed; nothing more is said here, "
                                       "the operators have the time of it")(scope, receive_, sending)
        finally:
            log.info("%s %s %.0fms", shown_request(scope["method"], scope["path"]), status["code"],
                     (time.monotonic() - started) * 1000)


# A request as the log and the audit show it: anyone may send a method and a path, and a request
# without a token is audited, so their lengths are capped (the audit can only grow) and what cannot
# be printed is escaped.
PATH_SHOWN = 200
METHOD_SHOWN = 16


def shown_request(method: str, path: str) -> str:
    shown = path if path.isprintable() else path.encode("unicode_escape").decode("ascii")
    if len(shown) > PATH_SHOWN:
        shown = f"{shown[:PATH_SHOWN]}... ({len(path)} characters)"
    return f"{method[:METHOD_SHOWN]} {shown}"


def create_app(app: App) -> FastAPI:
    api = FastAPI(title="Adjudication: claim files over HTTP", version="1",
                  description="Upstream systems post claim files and read their batches back (SPEC section 9). "
                              "Every request but /healthz needs `Authorization: Bearer TOKEN`.")
    api.add_middleware(AccessLog)
    bearer = HTTPBearer(auto_error=False)
    limit = app.limits.max_file_bytes
    spool = str(app.settings.http_spool_dir) if app.settings.http_spool_dir else None
    # Reading a posted file (submit), and reading a whole batch or run back (its acknowledgement, its
    # outcomes, a remittance), take several times the data's size in memory: at most
    # ADJUDICATION_HTTP_CONCURRENT_SUBMITS of them run at once, the others wait (already on disk).
    reading_slots = anyio.CapacityLimiter(app.settings.http_concurrent_submits)
    # Requests without a valid token: at most one audit entry every ADJUDICATION_HTTP_REFUSED_AUDIT_SECONDS.
    refused = submitters.RefusedRequests(app.settings.http_refused_audit_seconds)

    async def reading(work, *args):
        """`work(*args)` in a worker thread, once a reading slot is free."""
        return await anyio.to_thread.run_sync(partial(work, *args), limiter=reading_slots)

    @api.exception_handler(Problem)
    async def _problem(_request: Request, error: Problem):
        return problem_response(error.status, error.title, error.detail, error.headers, **error.extra)

    @api.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException):
        return problem_response(error.status_code, _title(error.status_code), str(error.detail or ""),
                                getattr(error, "headers", None))

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError):
        # Locations and messages only: pydantic's `input` would echo what was sent.
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in error.errors()]
        return problem_response(422, "Invalid request", "; ".join(
            f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems), errors=problems)

    async def authenticated(request: Request,
                            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Submitter:
        if credentials is None:
            why = "no bearer token"
        else:
            found = await run_in_threadpool(submitters.authenticate, app.engine, credentials.credentials.strip())
            if found is not None:
                return found
            why = "unknown or revoked token"
        left_out = refused.to_record()
        if left_out is not None:
            await run_in_threadpool(submitters.audit_refused, app.engine,
                                    shown_request(request.method, request.url.path), why, left_out)
        raise Problem(401, "Unauthorized", f"{why}: send Authorization: Bearer TOKEN (a submitter's token)",
                      headers={"WWW-Authenticate": 'Bearer realm="adjudication"'})

    Caller = Annotated[Submitter, Depends(authenticated)]

    def visible(submitter: Submitter, batch_id: str) -> None:
        if submitters.owner_of(app.engine, batch_id) != submitter.name:
            raise Problem(404, "Not found", f"no batch {batch_id} posted by this submitter")

    def acknowledgement(submitter: Submitter, batch_id: str) -> dict:
        visible(submitter, batch_id)
        return intake.acknowledgement(app.engine, batch_id, app.rules)

    def answer(submitter: Submitter, batch_id: str, status: int, note: str | None = None) -> JSONResponse:
        document = intake.acknowledgement(app.engine, batch_id, app.rules)
        body = {"batch_id": batch_id, "new": status == 201, "received": document["received_date"],
                "status": document["status"], "acknowledgement": document,
                "links": _links(batch_id)}
        if note:
            body["note"] = note
        return JSONResponse(body, status_code=status, headers={"Location": f"/v1/batches/{batch_id}"})

    async def retried(request: Request, submitter: Submitter, earlier: str, name: str | None,
                      content_type: str) -> JSONResponse:
        """A post under an Idempotency-Key that an earlier post settled: the same file again is that
        post's batch (200); another file under the key is refused (422): answering with the earlier
        batch would drop the new file's claims without a word."""
        try:
            upload = await receive(request.stream(), content_type, limit, spool)
        except UploadRefused as error:
            raise Problem(error.status, error.title, error.detail) from None
        try:
            same = await reading(service.is_content_of, app.engine, earlier, name or upload.name or "",
                                 upload.path, app.limits)
        finally:
            upload.path.unlink(missing_ok=True)
        if not same:
            raise Problem(422, "Idempotency-Key used for another file",
                          "an earlier post with this Idempotency-Key queued other content; nothing was stored "
                          "(post a new file under a new key)")
        return await reading(answer, submitter, earlier, 200,
                             "a post with this Idempotency-Key was accepted before: nothing changed")

    @api.post("/v1/claim-files", status_code=201, tags=["claim files"], openapi_extra=POST_DOC, responses=POST_ANSWERS)
    async def post_claim_file(request: Request, submitter: Caller) -> JSONResponse:
        """Post one claim file: the body is the file (or one file part of a multipart form)."""
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()):
            raise Problem(400, "Bad Idempotency-Key", f"an Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable "
                          "ASCII characters")
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise Problem(415, "Unsupported Content-Encoding", "a claim file may come gzip-compressed "
                          "(Content-Encoding: gzip) or as it is; nothing else")
        content_type = request.headers.get("content-type", "")
        multipart = content_type.lower().startswith("multipart/form-data")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit + (MULTIPART_OVERHEAD if multipart else 0):
            raise Problem(413, "File too large", f"the body is over the limit of {limit} bytes "
                          "(ADJUDICATION_MAX_FILE_BYTES); nothing was stored")
        name = request.headers.get("claim-file-name")
        if name is None and not multipart:
            raise Problem(400, "File name missing", "name the file in a Claim-File-Name header "
                          "(its ending gives the format: .csv, .jsonl, .parquet, optionally .gz), or post "
                          "a multipart form")
        if name is not None:
            _check_name(name, content_type, multipart)
        if key is not None:
            try:
                earlier = await run_in_threadpool(submitters.take_key, app.engine, submitter, key)
            except submitters.KeyInUse as error:
                raise Problem(409, "Conflict", str(error)) from None
            if earlier is not None:
                return await retried(request, submitter, earlier, name, content_type)
        try:
            try:
                upload = await receive(request.stream(), content_type, limit, spool)
            except UploadRefused as error:
                raise Problem(error.status, error.title, error.detail) from None
            try:
                if name is None:
                    name = upload.name or ""
                    _check_name(name, "", multipart=False)
                if encoding == "gzip" and upload.head[:2] != GZIP_MAGIC:
                    raise Problem(400, "Not gzip", "Content-Encoding: gzip, but the body is not gzip-compressed")
                # The received date is the day of the post (the server's local date, as `submit`'s default).
                submit = partial(service.submit, app.engine, upload.path, app.rules, app.limits,
                                 name=name, submitter=submitter.name, vet=providers_vet(submitter, name))
                submitted = await reading(submit)
            except ForeignProviders as error:
                raise Problem(403, "Providers not allowed", str(error), file=name, lines=error.lines[:1000]) from None
            except (ClaimFileError, service.UserError) as error:
                raise Problem(422, "Claim file refused", str(error), file=name) from None
            finally:
                upload.path.unlink(missing_ok=True)
        except BaseException:
            if key is not None:
                await run_in_threadpool(submitters.release_key, app.engine, submitter, key)
            raise
        owner = await run_in_threadpool(submitters.owner_of, app.engine, submitted.batch_id)
        if owner != submitter.name:
            if key is not None:
                await run_in_threadpool(submitters.release_key, app.engine, submitter, key)
            raise Problem(409, "Already posted by another channel", "this content was already submitted (by "
                          "another submitter, the drop folder or the command line); it is not queued again")
        if key is not None:
            await run_in_threadpool(submitters.settle_key, app.engine, submitter, key, submitted.batch_id)
        await run_in_threadpool(submitters.audit_action, app.engine, submitter, "claim-files.post",
                                f"batch={submitted.batch_id}", "new" if submitted.new else "same content again")
        note = None if submitted.new else "this content was posted before: nothing changed"
        # The acknowledgement reads the whole batch again (for a big file, as much as submit did).
        return await reading(answer, submitter, submitted.batch_id, 201 if submitted.new else 200, note)

    @api.get("/v1/batches/{batch_id}", tags=["batches"])
    async def get_batch(batch_id: str, submitter: Caller) -> JSONResponse:
        """A batch's status and its acknowledgement."""
        def render() -> JSONResponse:
            document = acknowledgement(submitter, batch_id)
            return JSONResponse({"batch_id": batch_id, "file_name": document["file_name"],
                                 "status": document["status"], "submitted_at": document["submitted_at"],
                                 "received": document["received_date"], "claims": document["claims"],
                                 "accepted": document["accepted"], "rejected": document["rejected"],
                                 "acknowledgement": document, "links": _links(batch_id)})

        return await reading(render)

    @api.get("/v1/batches/{batch_id}/acknowledgement", tags=["batches"],
             responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
    async def get_acknowledgement(batch_id: str, request: Request, submitter: Caller) -> Response:
        """Accepted and rejected counts, and every rejected line with its field and reason (JSON, or
        CSV with `Accept: text/csv`)."""
        wanted = _wants(request)

        def render() -> Response:
            document = acknowledgement(submitter, batch_id)
            if wanted == "csv":
                return Response(_csv(intake.ack_frame(document)), media_type="text/csv; charset=utf-8")
            return JSONResponse(document)

        return await reading(render)

    @api.get("/v1/batches/{batch_id}/outcomes", tags=["batches"],
             responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
    async def get_outcomes(batch_id: str, request: Request, submitter: Caller) -> Response:
        """The latest outcome of every claim of the batch, in adjudication order (JSON, or CSV with
        `Accept: text/csv`); audited as an export."""
        wanted = _wants(request)

        def render() -> Response:
            visible(submitter, batch_id)
            frame = service.outcomes(app.engine, batch=batch_id, submitter=submitter.actor, export_format=wanted)
            if wanted == "csv":
                return Response(_csv(frame), media_type="text/csv; charset=utf-8")
            return Response(outcomes_for_json(frame).write_json(), media_type="application/json")

        return await reading(render)

    @api.get("/v1/runs/{run_id}/remittance", tags=["remittances"])
    async def get_remittance(run_id: int, submitter: Caller, provider: Annotated[str, Query()],
                       format: Annotated[str, Query(pattern="^(x12|csv)$")] = "x12") -> Response:
        """A provider's remittance advice for a run: the X12 835 or the readable CSV (404 for a
        provider the submitter does not post for, or a run that decided none of its claims or stored
        nothing; 422 when an id of its payments does not fit the 835: format=csv has them)."""
        from worker import remittances

        if provider not in submitter.providers:
            raise Problem(404, "Not found", "no remittance for this provider")
        try:
            text = await reading(remittances.provider_remittance, app.engine, run_id, provider, format,
                                 submitter.actor, app.payer)
        except remittances.No835 as error:  # the run did decide its claims: say why, and what works
            raise Problem(422, "No 835 for this provider", f"{error}; ask for format=csv") from None
        except service.UserError:
            raise Problem(404, "Not found", "no remittance for this provider in this run") from None
        media = "application/edi-x12" if format == "x12" else "text/csv; charset=utf-8"
        return Response(text, media_type=media)

    @api.get("/metrics", tags=["health"], include_in_schema=False)
    def metrics_endpoint() -> Response:
        """Prometheus metrics (counts and times only: no claim data), like /healthz without a token."""
        from worker import metrics

        body, content_type = metrics.render(app.engine)
        return Response(body, media_type=content_type)

    @api.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        """Database reachable with its schema at the newest revision, and the broker reachable."""
        checks = health_checks(app)
        ok = all(value in ("ok", "not configured") for value in checks.values())
        return JSONResponse({"status": "ok" if ok else "failing", **checks}, status_code=200 if ok else 503)

    return api


def health_checks(app: App) -> dict[str, str]:
    from worker.store.database import schema_revisions

    checks = {}
    try:
        current, heads = schema_revisions(app.engine)
        checks["database"] = "ok"
        checks["schema"] = "ok" if current == heads else "not at head (adjudicate db upgrade)"
    except Exception as error:  # noqa: BLE001 - reported, by type only
        checks["database"] = f"unreachable ({type(error).__name__})"
        checks["schema"] = "unknown"
    url = app.settings.broker_url
    if not url:
        checks["broker"] = "not configured"
    else:
        try:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            client.ping()
            client.close()
            checks["broker"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["broker"] = f"unreachable ({type(error).__name__})"
    return checks


def _check_name(name: str, content_type: str, multipart: bool) -> None:
    if not name or not name.isprintable() or "/" in name or "\\" in name or name != name.strip():
        raise Problem(400, "Bad file name", "the file name is one printable name without a folder")
    try:
        fmt, _gz = detect_format(name)
    except ClaimFileError as error:
        raise Problem(422, "Claim file refused", str(error), file=name) from None
    mime = content_type.split(";")[0].strip().lower()
    if not multipart and mime not in ANY_FORMAT and mime not in CONTENT_TYPES[fmt]:
        raise Problem(415, "Unsupported Content-Type", f"{label(name)} is {fmt}: send Content-Type "
                      f"{' or '.join(sorted(CONTENT_TYPES[fmt]))} (or application/octet-stream)")


def _wants(request: Request) -> str:
    accept = request.headers.get("accept", "").lower()
    if "text/csv" in accept:
        return "csv"
    if not accept or "json" in accept or "*/*" in accept:
        return "json"
    raise Problem(406, "Not acceptable", "answers are application/json or text/csv")


def _csv(frame: pl.DataFrame) -> str:
    return safe_for_spreadsheets(frame).write_csv()


def _links(batch_id: str) -> dict[str, str]:
    return {"self": f"/v1/batches/{batch_id}", "acknowledgement": f"/v1/batches/{batch_id}/acknowledgement",
            "outcomes": f"/v1/batches/{batch_id}/outcomes"}


def _title(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


POST_DOC = {
    "parameters": [
        {"name": "Claim-File-Name", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "The file's name; its ending gives the format (.csv, .jsonl, .parquet, optionally .gz). "
                        "Required unless the body is a multipart form whose file part names it."},
        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 255},
         "description": "A retry with the same key gets the first post's batch, whatever bytes it carries."},
        {"name": "Content-Encoding", "in": "header", "required": False, "schema": {"enum": ["gzip", "identity"]}},
    ],
    "requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string", "format": "binary"}},
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}}},
    }},
}
POST_ANSWERS = {
    200: {"description": "The same content (or Idempotency-Key) was posted before: the same batch"},
    201: {"description": "Queued as a new batch: its id, received date and acknowledgement"},
    400: {"description": "No file name, a bad Idempotency-Key, a broken multipart form or gzip body"},
    401: {"description": "No valid token"},
    403: {"description": "Lines bill providers this submitter may not post for (the file is refused)"},
    409: {"description": "A post with this Idempotency-Key is under way, or another channel posted this content"},
    413: {"description": "Over ADJUDICATION_MAX_FILE_BYTES"},
    415: {"description": "A Content-Type or Content-Encoding that does not fit the file"},
    422: {"description": "The file is refused as a whole (as `adjudicate submit` refuses it): file, line, field; "
                         "or another file under an Idempotency-Key an earlier post settled"},
}


def from_environment() -> FastAPI:
    """The app for uvicorn's workers (`adjudicate serve` passes its settings through the environment)."""
    return create_app(build())
