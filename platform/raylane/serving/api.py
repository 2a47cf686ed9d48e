"""The FastAPI app of a `Predictor` replica: routes, body checks and the error format.

Errors are JSON ``{"detail": "<message>", "errors": [{"field": ..., "problem": ...}]}``, with the
status saying what kind: 400 unreadable body (not UTF-8, not JSON), 401/403 API key, 404 unknown
entity (``serve.unknown_entity: reject``), 413 body over ``serve.max_body_bytes``, 415 not JSON,
422 a field's value, 504 over ``serve.request_timeout_s``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from raylane._version import __version__
from raylane.serving.app import ApiError
from raylane.serving.schemas import field_path

if TYPE_CHECKING:
    from raylane.serving.app import Predictor

__all__ = ["build_api"]

_MAX_LISTED = 10


def _error(exc: ApiError) -> JSONResponse:
    body: dict[str, Any] = {"detail": exc.message}
    if exc.errors:
        body["errors"] = exc.errors
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _invalid(exc: ValidationError, known_fields: list[str]) -> ApiError:
    problems = []
    for e in exc.errors(include_url=False):
        if e["type"] == "json_invalid":
            return ApiError(400, f"the body is not valid JSON: {e['ctx'].get('error', e['msg'])}")
        where = field_path(tuple(e["loc"]))
        msg = str(e["msg"])
        if e["type"] == "extra_forbidden":
            msg = f"unknown field; the fields are {', '.join(known_fields)}"
        elif e["type"] == "missing":
            msg = "required"
        elif e["type"] == "too_long":
            msg += " (serve.max_entities_per_request)"
        problems.append({"field": where, "problem": msg})
    listed = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:_MAX_LISTED])
    more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
    return ApiError(422, f"invalid request: {listed}{more}", errors=problems)


async def _read_json_body(request: Request, limit: int) -> bytes:
    ctype = request.headers.get("content-type", "")
    if ctype.split(";")[0].strip().lower() != "application/json":
        raise ApiError(415, f"Content-Type is {ctype or 'missing'!r}; send the body as application/json")
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ApiError(400, f"Content-Length {length!r} is not a number")
        if int(length) > limit:
            raise ApiError(413, f"the body has {int(length):,} bytes; the limit is {limit:,} (serve.max_body_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body exceeds the limit of {limit:,} bytes (serve.max_body_bytes)")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8 text (byte {exc.start} is {body[exc.start]:#04x})") from None
    if not body.strip():
        raise ApiError(400, "the body is empty; send a JSON object")
    return body


def build_api(p: Predictor) -> FastAPI:
    """The app, its routes closing over the replica ``p``."""
    cfg = p.cfg
    s = cfg.serve
    key = p.key
    fields = [key, *p.feature_names]
    api = FastAPI(
        title=f"raylane · {cfg.project}",
        description=(cfg.description or "") + f"\n\nPredictions of the `{cfg.model_name}` model ({cfg.model.task}).",
        version=__version__,
        # FastAPI's own OpenTelemetry (on by default since 0.16x) cost ~2.7 ms a request here;
        # Ray Serve already records every request's metrics and traces.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc)

    @api.exception_handler(RequestValidationError)
    async def _request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": field_path(tuple(e["loc"])), "problem": str(e["msg"])} for e in exc.errors()]
        return _error(ApiError(422, "invalid request", errors=problems))

    async def parse(request: Request, validate: Callable[[bytes], Any], known: list[str]) -> Any:
        """API key, then the body's checks, then the pydantic model (the same for every POST)."""
        p.authorize(request.headers)
        body = await _read_json_body(request, s.max_body_bytes)
        try:
            return validate(body)
        except ValidationError as exc:
            raise _invalid(exc, known) from None

    async def timed(coro: Any) -> Any:
        try:
            return await asyncio.wait_for(coro, s.request_timeout_s)
        except TimeoutError:
            raise ApiError(504, f"the request took over {s.request_timeout_s} s (serve.request_timeout_s)") from None

    @api.post(
        "/predict",
        summary='Predict for one entity, or for many as {"entities": [...]}',
        openapi_extra=p.schemas.openapi_predict(),
    )
    async def predict(request: Request) -> JSONResponse:
        rows = await parse(request, p.schemas.parse_predict, fields)
        model, scored = await timed(p.score(rows))
        unknown = [getattr(r, key) for r, sc in zip(rows, scored, strict=True) if not sc.known]
        if unknown and s.unknown_entity == "reject":
            shown = ", ".join(map(str, unknown[:_MAX_LISTED])) + (" …" if len(unknown) > _MAX_LISTED else "")
            raise ApiError(
                404,
                f"no features for {key} {shown} in the online store (unknown, or older than the views' ttl);"
                " materialize the features, or send every feature with the request",
                errors=[{"field": f"{key}", "problem": f"unknown {key} {k}"} for k in unknown[:_MAX_LISTED]],
            )
        request_id = uuid.uuid4().hex
        p.log_predictions(request_id, model, rows, scored)
        out = []
        for row, sc in zip(rows, scored, strict=True):
            item: dict[str, Any] = {key: getattr(row, key), "prediction": sc.prediction}
            if sc.probabilities is not None:
                item["probabilities"] = dict(zip(map(str, model.bundle.pre.classes), sc.probabilities, strict=True))
            if not sc.known:
                item["imputed"] = True
            out.append(item)
        answer = {
            "request_id": request_id,
            "model": {"name": model.name, "version": model.version, "alias": s.model_alias},
            "predictions": out,
        }
        return JSONResponse(answer)

    @api.post(
        "/feedback",
        status_code=202,
        summary="Send the observed label for a prediction",
        openapi_extra=p.schemas.openapi_feedback(),
    )
    async def feedback(request: Request) -> JSONResponse:
        item = await parse(request, p.schemas.Feedback.model_validate_json, list(p.schemas.Feedback.model_fields))
        p.log_feedback(item)
        return JSONResponse({"request_id": item.request_id, "accepted": True}, status_code=202)

    @api.get("/healthz", summary="Liveness and the model this replica serves")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "replica": p.replica,
            "model": {"name": p.model.name, "version": p.model.version},
            "served": p.served,
            "log_rows_pending": p.predictions.pending + p.feedback.pending,
        }

    @api.get("/metadata", summary="The model, its lineage and the features it reads")
    async def metadata() -> dict[str, Any]:
        m = p.model
        lineage_keys = (
            "git_sha",
            "git_dirty",
            "config_hash",
            "data_hash",
            "data_rows",
            "data_views",
            "data_label_time_min",
            "data_label_time_max",
            "ray_job_id",
            "parent_version",
        )
        return {
            "project": cfg.project,
            "task": cfg.model.task,
            "model": {
                "name": m.name,
                "version": m.version,
                "alias": s.model_alias,
                "run_id": m.run_id,
                "loaded_at": m.loaded_at,
                "gate": {k.split(".", 1)[1]: v for k, v in m.tags.items() if k.startswith("gate.")},
            },
            "lineage": {k: m.tags[k] for k in lineage_keys if k in m.tags},
            "entity": {"name": cfg.entity.name, "join_key": key},
            "features": [
                {"name": f, "dtype": t, "used_by_model": f in m.bundle.features}
                for f, t in p.schemas.feature_dtypes.items()
            ],
            "label": cfg.data.labels.column,
            "classes": [str(c) for c in m.bundle.pre.classes] if cfg.model.task == "multiclass" else None,
            "limits": {
                "max_entities_per_request": s.max_entities_per_request,
                "max_body_bytes": s.max_body_bytes,
                "request_timeout_s": s.request_timeout_s,
            },
            "unknown_entity": s.unknown_entity,
            "auth": p._key_hash is not None,
            "replica": p.replica,
        }

    return api
