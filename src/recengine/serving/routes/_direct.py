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

Any other parameter is refused when the route is built. Everything else is FastAPI's contract,
kept: matching, the OpenAPI description (from the endpoint's signature, as for any route), the
exception handlers, ``status_code``, and the answer validated into ``response_model`` (extra
fields dropped) unless it already is one. What the direct handler cannot do, FastAPI's own
handler does instead: routes with dependencies of their own or from their router, or with
response filtering options (``response_model_exclude`` and the like), are built with it, and a
request goes to it whenever ``app.dependency_overrides`` is set or an including router added
dependencies. A refused key raises the
access function's ``HTTPException``; a bad query raises ``RequestValidationError`` with each
error located in ``query``, as FastAPI's own solver does (tests/serving/routes/test_direct.py
compares the two on the same requests).
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
from starlette.types import Scope

from recengine.serving.deps import ACCESS, API_KEY_HEADER, Context

__all__ = ["DirectRoute"]


class DirectRoute(APIRoute):
    """An :class:`~fastapi.routing.APIRoute` that reads its parameters directly (see module)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        general = super().get_route_handler()
        if self.dependencies or not _plain_serialisation(self):
            return general  # what this route reads or writes needs FastAPI's own handler
        endpoint = self.endpoint
        context_name, access, query_name, query_model, paths = _parameters(
            endpoint, set(self.param_convertors))
        is_coroutine = inspect.iscoroutinefunction(endpoint)
        model = self.response_model
        status = self.status_code or 200

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides or _included_with_dependencies(request.scope):
                return await general(request)
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
            if isinstance(result, Response):
                return result
            if type(result) is not model:  # filtered to the response model, as FastAPI does
                result = model.model_validate(
                    result.model_dump() if isinstance(result, BaseModel) else result)
            return Response(result.model_dump_json(), status_code=status,
                            media_type="application/json")

        return handler


def _plain_serialisation(route: APIRoute) -> bool:
    """Whether the route's answer is its response model as it is (no include, exclude or
    alias options), which the direct handler writes."""
    return (isinstance(route.response_model, type) and issubclass(route.response_model, BaseModel)
            and route.response_model_include is None and route.response_model_exclude is None
            and route.response_model_by_alias and not route.response_model_exclude_unset
            and not route.response_model_exclude_defaults
            and not route.response_model_exclude_none)


def _included_with_dependencies(scope: Scope) -> bool:
    """Whether a router that includes this route added dependencies: FastAPI keeps them in the
    request's effective route context, not on the route, so only its own handler runs them."""
    context = scope.get("fastapi", {}).get("effective_route_context")
    return bool(getattr(context, "dependencies", None))


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
