"""DirectRoute answers every request as FastAPI's own solver does for the same endpoint."""

from __future__ import annotations

from types import ModuleType
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from httpx import Response

from recengine.serving.app import create_app
from recengine.serving.deps import Reader, read_access
from recengine.serving.routes import items, recommendations
from recengine.serving.routes._direct import DirectRoute
from recengine.serving.routes.items import audience, similar
from recengine.serving.routes.recommendations import recommend
from recengine.serving.schemas import (
    AudienceList,
    RecommendationList,
    RecommendationQuery,
    SimilarList,
)
from recengine.serving.settings import Settings
from recengine.serving.state import ServingState
from tests.serving.conftest import READ_KEY, WRITE_KEY, World

#: Each direct route: its path under /v1, its endpoint, and (query string, API key) pairs
#: covering answers, refusals and each kind of bad input.
ROUTES = {
    "/users/{id}/recommendations": (recommend, RecommendationList, [
        ("k=5", READ_KEY), ("k=5", WRITE_KEY), ("k=5", None), ("k=5", "wrong"), ("k=5", ""),
        ("", READ_KEY), ("k=3&offset=2&explain=true", READ_KEY), ("k=4&explain=yes", READ_KEY),
        ("k=0", READ_KEY), ("k=abc", READ_KEY), ("k=", READ_KEY), ("k=2&k=6", READ_KEY),
        ("offset=-1", READ_KEY), ("explain=maybe", READ_KEY), ("k=5&unknown=1", READ_KEY),
        ("k=100000", READ_KEY), ("model=nope", READ_KEY), ("constraint=price%20%3C", READ_KEY),
        ("rules=%5B", READ_KEY), ("k=2&k=x&offset=z", READ_KEY)]),
    "/items/{id}/similar": (similar, SimilarList, [
        ("k=4", READ_KEY), ("", None), ("k=0", READ_KEY), ("k=1000", READ_KEY)]),
    "/items/{id}/audience": (audience, AudienceList, [
        ("n=3", READ_KEY), ("n=3", "wrong"), ("n=x", READ_KEY), ("n=1000", READ_KEY),
        ("n=3", "")]),
}
CASES = [(path, query, key) for path, (_, _, requests) in ROUTES.items()
         for query, key in requests]


@pytest.fixture
def app(state: ServingState) -> FastAPI:
    """The real app, plus each direct route's endpoint on a route FastAPI's solver serves."""
    app = create_app(Settings(read_keys=READ_KEY, write_keys=WRITE_KEY, max_k=200), state)
    for path, (endpoint, response_model, _) in ROUTES.items():
        name = path.split("/")[1][:-1]  # "user" or "item"
        app.router.add_api_route("/solved" + path.replace("{id}", f"{{{name}_id}}"),
                                 endpoint, methods=["GET"], response_model=response_model,
                                 route_class_override=APIRoute)
    return app


@pytest.mark.parametrize("module", [recommendations, items])
def test_the_hot_reads_are_direct(module: ModuleType) -> None:
    gets = [r for r in module.router.routes if isinstance(r, APIRoute) and "GET" in r.methods]
    assert gets and all(type(r) is DirectRoute for r in gets)


@pytest.mark.parametrize(("path", "query", "key"), CASES)
def test_same_answer_as_fastapis_solver(app: FastAPI, world: World, path: str, query: str,
                                        key: str | None) -> None:
    client = TestClient(app)
    headers = {"X-API-Key": key} if key is not None else {}
    url = path.replace("{id}", world.users[2] if path.startswith("/users") else world.items[2])
    _same(client, url, query, headers)


@pytest.mark.parametrize("path", ROUTES)
def test_same_refusal_of_a_bad_path_id(app: FastAPI, path: str) -> None:
    """A NUL in the path's id is refused by the id's own validator on both routes."""
    url = path.replace("{id}", "a%00b")
    response = _same(TestClient(app), url, "", {"X-API-Key": READ_KEY})
    assert response.status_code == 422


def _same(client: TestClient, url: str, query: str, headers: dict[str, str]) -> Response:
    direct = client.get(f"/v1{url}?{query}", headers=headers)
    solved = client.get(f"/solved{url}?{query}", headers=headers)
    assert (direct.status_code, direct.json()) == (solved.status_code, solved.json())
    assert direct.headers["content-type"] == solved.headers["content-type"]
    assert direct.headers.get("www-authenticate") == solved.headers.get("www-authenticate")
    return direct


def test_openapi_documents_the_query_and_the_key(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/v1/users/{user_id}/recommendations"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"user_id", "k", "model", "constraint", "rules", "explain", "offset"} <= names
    assert operation["security"] == [{"APIKeyHeader": []}]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendationList"}


def test_parameters_it_cannot_read_are_refused_when_built() -> None:
    async def extra(user_id: str, ctx: Reader, k: Annotated[int, Query()] = 1
                    ) -> RecommendationList: ...

    async def numeric_path(user_id: Annotated[int, Path()], ctx: Reader,
                           query: Annotated[RecommendationQuery, Query()]
                           ) -> RecommendationList: ...

    async def no_context(user_id: str) -> RecommendationList: ...

    for endpoint in (extra, numeric_path, no_context):
        with pytest.raises(TypeError, match=endpoint.__name__):
            DirectRoute("/u/{user_id}", endpoint, response_model=RecommendationList)


def _denied() -> None:
    raise HTTPException(418, "denied by a dependency")


class _Wide(RecommendationList):
    secret: str = "not for clients"


@pytest.fixture
def contract_app(state: ServingState) -> FastAPI:
    """Direct routes as a user would add them: under routers with dependencies, returning a
    wider model, with a status code of their own."""

    async def wide(user_id: str, ctx: Reader) -> _Wide:
        return _Wide(user_id=user_id, model_version="v", items=[], count=0)

    app = create_app(Settings(read_keys=READ_KEY, write_keys=WRITE_KEY), state)
    own = APIRouter(dependencies=[Depends(_denied)])
    own.add_api_route("/own/{user_id}", wide, methods=["GET"],
                      response_model=RecommendationList, route_class_override=DirectRoute)
    app.include_router(own)
    plain = APIRouter()
    plain.add_api_route("/included/{user_id}", wide, methods=["GET"],
                        response_model=RecommendationList, route_class_override=DirectRoute)
    app.include_router(plain, dependencies=[Depends(_denied)])
    status = APIRouter()
    status.add_api_route("/status/{user_id}", wide, methods=["GET"], status_code=203,
                         response_model=RecommendationList, route_class_override=DirectRoute)
    app.include_router(status)
    return app


def test_dependencies_of_the_router_or_its_inclusion_run(contract_app: FastAPI) -> None:
    client = TestClient(contract_app)
    headers = {"X-API-Key": READ_KEY}
    assert client.get("/own/u1", headers=headers).status_code == 418
    assert client.get("/included/u1", headers=headers).status_code == 418


def test_status_code_and_response_model_filtering_hold(contract_app: FastAPI) -> None:
    response = TestClient(contract_app).get("/status/u1", headers={"X-API-Key": READ_KEY})
    assert response.status_code == 203
    assert "secret" not in response.json() and response.json()["user_id"] == "u1"


def test_dependency_overrides_apply(contract_app: FastAPI, world: World) -> None:
    contract_app.dependency_overrides[read_access] = _denied
    client = TestClient(contract_app)
    assert client.get("/status/u1", headers={"X-API-Key": READ_KEY}).status_code == 418
    assert client.get(f"/v1/users/{world.users[0]}/recommendations",
                      headers={"X-API-Key": READ_KEY}).status_code == 418
    contract_app.dependency_overrides.clear()
    assert client.get(f"/v1/users/{world.users[0]}/recommendations",
                      headers={"X-API-Key": READ_KEY}).status_code == 200
