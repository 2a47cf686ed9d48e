"""The HTTP side of a replica: its FastAPI app, the API key check, body checks and the error format.

Errors are JSON ``{"detail": "<message>", "errors": [{"field": ..., "problem": ...}]}``, with the
status saying what kind: 400 unreadable body (not UTF-8, not JSON), 401/403 API key, 404 unknown
entity (``serve.unknown_entity: reject``) or a ``/feedback`` request id the service never issued,
413 body over ``serve.max_body_bytes``, 415 not JSON, 422 a field's value (a label the task does
not allow included), 500 an entity the model could not score, 504 over ``serve.request_timeout_s``.

Labels: ``/feedback`` takes a label only for a request id this service issued (ids carry an HMAC,
`raylane.serving.ids`), and only one the task allows (`raylane.labels`; for multiclass, one of the
serving model's classes). Sending another label for the same request id (and entity) replaces it:
the latest one received is the one monitoring and retraining use.

This module knows the replica only through the `Replica` protocol (what the routes call); the
replica (`raylane.serving.app.Predictor`) builds its app with `build_api(self)`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from raylane._version import __version__
from raylane.labels import FLOAT32_MAX
from raylane.lineage import Lineage
from raylane.serving.schemas import INT64_MAX, INT64_MIN, field_path

if TYPE_CHECKING:
    from raylane.bundle import ModelBundle
    from raylane.config import ProjectConfig
    from raylane.serving.ids import RequestIds
    from raylane.serving.schemas import Schemas

__all__ = ["ApiError", "ApiKeyCheck", "Replica", "Score", "ServedModel", "build_api"]

_MAX_LISTED = 10


class ApiError(Exception):
    """An HTTP error answer: status, a message naming what was wrong, and per-field problems."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or {}


class ApiKeyCheck:
    """The API key check of one service: it holds the key's SHA-256 digest, never the key.

    ``ApiKeyCheck(None)`` lets every request through (auth off), as anonymous. With
    ``allow_anonymous`` a request without a key is let through too (a wrong key never is).
    """

    def __init__(self, key_sha256: str | None, *, allow_anonymous: bool = False) -> None:
        self._digest = key_sha256
        self._anonymous = allow_anonymous

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    @property
    def anonymous(self) -> bool:
        """Whether /predict answers requests without a key."""
        return self._digest is None or self._anonymous

    def __call__(self, headers: Mapping[str, str], *, anonymous_ok: bool = True) -> bool:
        """True for a request with the right key; False for an anonymous one let through (no key
        configured, or ``allow_anonymous`` and ``anonymous_ok``); 401 without a key, 403 with a wrong one."""
        if self._digest is None:
            return False
        given = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            if self._anonymous and anonymous_ok:
                return False
            raise ApiError(
                401,
                "an API key is required: send it in the X-API-Key header (or `Authorization: Bearer <key>`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # digests compared in constant time: the answer's timing tells nothing about the key
        if not hmac.compare_digest(hashlib.sha256(given.encode()).hexdigest(), self._digest):
            raise ApiError(403, "the API key is not valid for this service")
        return True


# ----- what the routes need from the replica


class ServedModel(Protocol):
    """A model version a replica serves."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def loaded_at(self) -> str: ...
    @property
    def alias(self) -> str: ...  # the alias it answers as (challenger: a canary's answer)
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def bundle(self) -> ModelBundle: ...


class Score(Protocol):
    """One entity's score."""

    @property
    def prediction(self) -> Any: ...
    @property
    def probabilities(self) -> list[float] | None: ...  # multiclass: one per class
    @property
    def known(self) -> bool: ...  # False: the online store had no features for the entity


M = TypeVar("M", bound=ServedModel)
S = TypeVar("S", bound=Score)


class Replica(Protocol[M, S]):
    """What the app calls on its replica: the config, scoring and the inference log."""

    @property
    def cfg(self) -> ProjectConfig: ...
    @property
    def key(self) -> str: ...  # the entity's join key
    @property
    def feature_names(self) -> list[str]: ...
    @property
    def schemas(self) -> Schemas: ...
    @property
    def auth(self) -> ApiKeyCheck: ...
    @property
    def replica(self) -> str: ...
    @property
    def served(self) -> int: ...  # entities scored so far
    @property
    def model(self) -> M: ...  # the version current now
    @property
    def log_rows_pending(self) -> int: ...
    @property
    def request_ids(self) -> RequestIds: ...

    def log_health(self) -> dict[str, Any]: ...
    def rollout(self) -> dict[str, Any]: ...
    async def score(self, rows: list[Any]) -> tuple[M, list[S]]: ...
    def log_predictions(
        self, request_id: str, model: M, rows: list[Any], scored: list[S], *, authenticated: bool
    ) -> None: ...
    def log_feedback(self, item: Any) -> None: ...


# ----- requests and answers


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
        elif e["type"] in ("less_than_equal", "greater_than_equal"):
            msg = _out_of_range(e["input"])
        problems.append({"field": where, "problem": msg})
    listed = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:_MAX_LISTED])
    more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
    return ApiError(422, f"invalid request: {listed}{more}", errors=problems)


def _out_of_range(value: Any) -> str:
    if isinstance(value, int):
        return f"{value} is out of range: integers are int64, from {INT64_MIN} to {INT64_MAX}"
    return f"{value!r} is out of range: numbers are within ±{FLOAT32_MAX:.2g} (float32, what the model computes in)"


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


async def _parse(
    p: Replica[M, S], request: Request, validate: Callable[[bytes], Any], known: list[str], *, anonymous_ok: bool
) -> tuple[bool, Any]:
    """API key, then the body's checks, then the pydantic model (the same for every POST); with
    whether the request was authenticated (`ApiKeyCheck`)."""
    authenticated = p.auth(request.headers, anonymous_ok=anonymous_ok)
    body = await _read_json_body(request, p.cfg.serve.max_body_bytes)
    try:
        return authenticated, validate(body)
    except ValidationError as exc:
        raise _invalid(exc, known) from None


async def _timed(coro: Any, timeout_s: float) -> Any:
    try:
        return await asyncio.wait_for(coro, timeout_s)
    except TimeoutError:
        raise ApiError(504, f"the request took over {timeout_s} s (serve.request_timeout_s)") from None


def _reject_unknown(key: str, unknown: list[Any]) -> ApiError:
    shown = ", ".join(map(str, unknown[:_MAX_LISTED])) + (" …" if len(unknown) > _MAX_LISTED else "")
    return ApiError(
        404,
        f"no features for {key} {shown} in the online store (unknown, or older than the views' ttl);"
        " materialize the features, or send every feature with the request",
        errors=[{"field": f"{key}", "problem": f"unknown {key} {k}"} for k in unknown[:_MAX_LISTED]],
    )


def _predictions(key: str, model: ServedModel, rows: list[Any], scored: list[S]) -> list[dict[str, Any]]:
    out = []
    for row, sc in zip(rows, scored, strict=True):
        item: dict[str, Any] = {key: getattr(row, key), "prediction": sc.prediction}
        if sc.probabilities is not None:
            item["probabilities"] = dict(zip(map(str, model.bundle.pre.classes), sc.probabilities, strict=True))
        if not sc.known:
            item["imputed"] = True
        out.append(item)
    return out


async def _predict(p: Replica[M, S], request: Request) -> dict[str, Any]:
    s = p.cfg.serve
    authenticated, rows = await _parse(
        p, request, p.schemas.parse_predict, [p.key, *p.feature_names], anonymous_ok=True
    )
    model, scored = await _timed(p.score(rows), s.request_timeout_s)
    unknown = [getattr(r, p.key) for r, sc in zip(rows, scored, strict=True) if not sc.known]
    if unknown and s.unknown_entity == "reject":
        raise _reject_unknown(p.key, unknown)
    request_id = p.request_ids.new()
    p.log_predictions(request_id, model, rows, scored, authenticated=authenticated)
    return {
        "request_id": request_id,
        "model": {"name": model.name, "version": model.version, "alias": model.alias},
        "predictions": _predictions(p.key, model, rows, scored),
    }


def _check_feedback(p: Replica[M, S], item: Any) -> None:
    """404 for a request id the service never issued; 422 for a class the model does not know."""
    if not p.request_ids.issued(item.request_id):
        raise ApiError(
            404,
            f"request_id {item.request_id} was not issued by this service; send the `request_id` of a /predict answer",
            errors=[{"field": "request_id", "problem": "not issued by this service"}],
        )
    if p.cfg.model.task == "multiclass":
        classes = [str(c) for c in p.model.bundle.pre.classes]
        if str(item.label) not in classes:
            raise ApiError(
                422,
                f"invalid request: label: {item.label!r} is not one of the model's classes {classes}",
                errors=[{"field": "label", "problem": f"not one of {classes}"}],
            )


def _lineage(tags: Mapping[str, str]) -> dict[str, str]:
    """The lineage /metadata shows (not the submission id or project), in its order, the known ones only."""
    lin = Lineage.from_tags(tags)
    shown = {
        "git_sha": lin.git_sha,
        "git_dirty": lin.git_dirty,
        "config_hash": lin.config_hash,
        "data_hash": lin.data_hash,
        "data_rows": lin.data_rows,
        "data_views": lin.data_views,
        "data_label_time_min": lin.data_label_time_min,
        "data_label_time_max": lin.data_label_time_max,
        "ray_job_id": lin.ray_job_id,
        "parent_version": lin.parent_version,
    }
    return {k: v for k, v in shown.items() if v != ""}


def _metadata(p: Replica[M, S]) -> dict[str, Any]:
    cfg, s, m = p.cfg, p.cfg.serve, p.model
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
        "lineage": _lineage(m.tags),
        "entity": {"name": cfg.entity.name, "join_key": p.key},
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
        "auth": p.auth.enabled,
        "anonymous": p.auth.anonymous,
        "rollout": p.rollout(),
        "replica": p.replica,
    }


def _new_app(cfg: ProjectConfig) -> FastAPI:
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

    return api


def build_api(p: Replica[M, S]) -> FastAPI:
    """The app, its routes closing over the replica ``p``."""
    api = _new_app(p.cfg)
    feedback_model = p.schemas.Feedback

    @api.post(
        "/predict",
        summary='Predict for one entity, or for many as {"entities": [...]}',
        openapi_extra=p.schemas.openapi_predict(),
    )
    async def predict(request: Request) -> JSONResponse:
        return JSONResponse(await _predict(p, request))

    @api.post(
        "/feedback",
        status_code=202,
        summary="Send the observed label for a prediction",
        openapi_extra=p.schemas.openapi_feedback(),
    )
    async def feedback(request: Request) -> JSONResponse:
        # labels feed retrains: with an API key configured they need it, anonymous requests or not
        _, item = await _parse(
            p, request, feedback_model.model_validate_json, list(feedback_model.model_fields), anonymous_ok=False
        )
        _check_feedback(p, item)
        p.log_feedback(item)
        return JSONResponse({"request_id": item.request_id, "accepted": True}, status_code=202)

    @api.get("/healthz", summary="Liveness, the model this replica serves, and its inference log's state")
    async def healthz() -> dict[str, Any]:
        logs = p.log_health()
        return {
            "status": "degraded" if logs["stuck"] else "ok",
            "replica": p.replica,
            "model": {"name": p.model.name, "version": p.model.version},
            "served": p.served,
            "log_rows_pending": p.log_rows_pending,
            "inference_log": logs,
        }

    @api.get("/metadata", summary="The model, its lineage and the features it reads")
    async def metadata() -> dict[str, Any]:
        return _metadata(p)

    return api
