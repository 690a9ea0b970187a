"""``DirectRoute``: a read route whose parameters are read without FastAPI's general solver.

FastAPI's solver works out, on every request, how to read each parameter from its annotation.
For the recommendations route (an API key and a query model) that walk cost about 0.13 ms, a
third of the route's whole cost, and held it under half of ``/healthz``'s throughput
(docs/benchmarks.md). A route of this class accepts three kinds of parameter, sorted
out once when the route is built:

- path parameters, as ``str`` or an ``Annotated`` ``str`` whose validators run here too
  (:data:`~recengine.serving.schemas.Text`);
- one :class:`~recengine.serving.deps.Context` through ``Open``, ``Reader`` or ``Writer``,
  checked by the same access function with the ``X-API-Key`` header;
- at most one query model, ``Annotated[Model, Query()]``, validated in one call.

Any other parameter is refused when the route is built. The endpoint must return its
``response_model``. Everything else is FastAPI's: matching, the OpenAPI description (from the
endpoint's signature, as for any route) and the exception handlers. A refused key raises the
access function's ``HTTPException``; a bad query raises ``RequestValidationError`` with each
error located in ``query``, as FastAPI's own solver does (tests/serving/test_direct.py compares
the two on the same requests).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from recengine.serving.deps import ACCESS, API_KEY_HEADER, Context

__all__ = ["DirectRoute"]


class DirectRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` that reads its parameters directly (see module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint
        context_name, access, query_name, query_model, paths = _parameters(
            endpoint, set(self.param_convertors))
        is_coroutine = inspect.iscoroutinefunction(endpoint)

        async def handler(request: Request) -> Response:
            values: dict[str, Any] = dict(request.path_params)
            for name, adapter in paths:
                values[name] = _validate_path(adapter, name, values[name])
            values[context_name] = access(request, request.headers.get(API_KEY_HEADER))
            if query_model is not None:
                values[query_name] = _validate_query(query_model, request)
            if is_coroutine:
                result = await endpoint(**values)
            else:
                result = await run_in_threadpool(endpoint, **values)
            return Response(result.model_dump_json(), media_type="application/json")

        return handler


Check = Callable[[Request, str | None], Context]


Paths = list[tuple[str, TypeAdapter[str]]]


def _parameters(endpoint: Callable[..., Any], path_names: set[str]
                ) -> tuple[str, Check, str, type[BaseModel] | None, Paths]:
    """The context's parameter name and access function, the query model's name and class,
    and a validator for each annotated path parameter."""
    hints = typing.get_type_hints(endpoint, include_extras=True)
    context: tuple[str, Check] | None = None
    query: tuple[str, type[BaseModel] | None] = ("", None)
    paths: Paths = []
    for name in inspect.signature(endpoint).parameters:
        hint = hints.get(name)
        base, *meta = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated \
            else (hint,)
        if name in path_names and base is str:
            if meta:  # Annotated[str, ...]: a type, though get_type_hints cannot say so
                paths.append((name, TypeAdapter(typing.cast(type[str], hint))))
            continue
        if base is Context and meta and isinstance(meta[0], params.Depends) \
                and meta[0].dependency in ACCESS:
            context = (name, ACCESS[meta[0].dependency])
        elif isinstance(base, type) and issubclass(base, BaseModel) and meta \
                and isinstance(meta[0], params.Query) and query[1] is None:
            query = (name, base)
        else:
            raise TypeError(f"DirectRoute cannot read parameter {name!r} of "
                            f"{endpoint.__qualname__}: path parameters are str, with one "
                            f"Context dependency and at most one query model")
    if context is None:
        raise TypeError(f"DirectRoute needs a Context parameter on {endpoint.__qualname__}")
    return context[0], context[1], query[0], query[1], paths


def _validate_query(model: type[BaseModel], request: Request) -> BaseModel:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise _located(exc, "query") from None


def _validate_path(adapter: TypeAdapter[str], name: str, value: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise _located(exc, "path", name) from None


def _located(exc: ValidationError, *prefix: str) -> RequestValidationError:
    """``exc`` with each error located as FastAPI's solver locates it (``query``, ``path``)."""
    return RequestValidationError([{**error, "loc": (*prefix, *error["loc"])}
                                   for error in exc.errors(include_url=False)])
