"""The REST API's contract: validation, authentication, listing, health."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(django_user_model: Any) -> APIClient:
    user = django_user_model.objects.create_user("bob", password="pw-bob-12345")
    client = APIClient()
    client.force_authenticate(user)
    return client


def messages(errors: Any) -> str:
    """All messages of one field's errors, which nest per item for lists and maps."""
    if isinstance(errors, dict):
        return " ".join(messages(e) for e in errors.values())
    if isinstance(errors, list):
        return " ".join(messages(e) for e in errors)
    return str(errors)


def post(client: APIClient, body: Any) -> Any:
    return client.post("/api/v1/jobs", body, format="json")


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"type": "command", "command": "true", "colour": "red"}, "colour", "Unknown"),
        ({"command": "true"}, "type", "required"),
        ({"type": "cron", "command": "true"}, "type", "not a valid choice"),
        ({"type": "command"}, "command", "required for command jobs"),
        ({"type": "command", "command": 5}, "command", "valid string"),
        (
            {"type": "command", "command": "true", "timeout": "soon"},
            "timeout",
            "duration",
        ),
        (
            {"type": "command", "command": "true", "timeout": "5x"},
            "timeout",
            "duration",
        ),
        ({"type": "command", "command": "true", "timeout": -3}, "timeout", "positive"),
        (
            {"type": "command", "command": "true", "timeout": True},
            "timeout",
            "duration",
        ),
        ({"type": "command", "command": "true", "retries": "3"}, "retries", "integer"),
        ({"type": "command", "command": "true", "retries": -1}, "retries", "greater"),
        ({"type": "command", "command": "true", "priority": 10}, "priority", "less"),
        (
            {"type": "command", "command": "true", "priority": 1.5},
            "priority",
            "integer",
        ),
        ({"type": "command", "command": "true", "tags": "a"}, "tags", "list"),
        ({"type": "command", "command": "true", "tags": [1]}, "tags", "string"),
        ({"type": "command", "command": "true", "tags": ["a b"]}, "tags", "not valid"),
        ({"type": "command", "command": "true", "env": ["A=1"]}, "env", "dictionary"),
        ({"type": "command", "command": "true", "env": {"A": 1}}, "env", "string"),
        (
            {"type": "command", "command": "true", "env": {"A=B": "1"}},
            "env",
            "variable name",
        ),
        (
            {"type": "command", "command": "true", "env": {"1A": "1"}},
            "env",
            "variable name",
        ),
        ({"type": "command", "command": "true", "cwd": "tmp"}, "cwd", "absolute"),
        (
            {"type": "command", "command": "true", "url": "http://x"},
            "url",
            "command jobs",
        ),
        ({"type": "command", "command": "true", "id": "a b"}, "id", "letters"),
        ({"type": "command", "command": "true", "id": "x" * 129}, "id", "128"),
        ({"type": "script", "script": ["echo"]}, "script", "valid string"),
        ({"type": "http", "url": "ftp://example.com"}, "url", "http"),
        ({"type": "http", "url": "http://x", "method": "FETCH"}, "method", "GET"),
        ({"type": "http", "url": "http://x", "headers": {"A": 1}}, "headers", "string"),
        (
            {"type": "http", "url": "http://x", "body": "a", "json": {}},
            "json",
            "either",
        ),
        (
            {"type": "http", "url": "http://x", "expected_statuses": [700]},
            "expected_statuses",
            "less",
        ),
        (
            {"type": "http", "url": "http://x", "command": "true"},
            "command",
            "http jobs",
        ),
        (["not", "an", "object"], "non_field_errors", "JSON object"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    client: APIClient, body: Any, field: str, says: str
) -> None:
    response = post(client, body)

    assert response.status_code == 400
    assert field in response.json(), response.json()
    assert says.lower() in messages(response.json()[field]).lower()
    assert Job.objects.count() == 0


def test_body_that_is_not_json_is_a_400(client: APIClient) -> None:
    response = client.post(
        "/api/v1/jobs", "{type: command", content_type="application/json"
    )

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_unauthenticated_requests_are_401() -> None:
    anonymous = APIClient()

    response = post(anonymous, {"type": "command", "command": "true"})

    assert response.status_code == 401
    assert anonymous.get("/api/v1/jobs").status_code == 401
    assert anonymous.get("/api/v1/workers").status_code == 401
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # the view inserts in autocommit
def test_duplicate_id_is_a_409_and_keeps_the_first_job(client: APIClient) -> None:
    first = post(client, {"id": "nightly", "type": "command", "command": "echo 1"})
    second = post(client, {"id": "nightly", "type": "command", "command": "echo 2"})

    assert first.status_code == 201
    assert second.status_code == 409
    assert "already exists" in second.json()["id"][0]
    assert Job.objects.get(id="nightly").spec["command"] == "echo 1"


def test_submitted_job_reads_back_with_its_defaults(client: APIClient) -> None:
    response = post(client, {"type": "http", "url": "http://127.0.0.1:9/x"})

    job = client.get(f"/api/v1/jobs/{response.json()['id']}").json()
    assert len(job["id"]) == 32
    assert job["status"] == "queued"
    assert job["url"] == "http://127.0.0.1:9/x"
    assert job["retries"] == 0
    assert job["max_attempts"] == 1
    assert job["priority"] == 0
    assert job["queue"] == "default"
    assert job["tags"] == []
    assert job["result"] is None
    assert job["attempts"] == []


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), (45, 45), (2.5, 2.5)],
)
def test_timeout_accepts_durations_and_seconds(
    client: APIClient, given: Any, seconds: float
) -> None:
    response = post(client, {"type": "command", "command": "true", "timeout": given})

    assert response.status_code == 201
    assert response.json()["timeout"] == seconds


def test_list_is_newest_first_and_filters_by_status_type_and_tag(
    client: APIClient,
) -> None:
    post(client, {"id": "a", "type": "command", "command": "true", "tags": ["gpu"]})
    post(client, {"id": "b", "type": "script", "script": "true", "tags": ["cpu"]})
    post(
        client, {"id": "c", "type": "command", "command": "true", "tags": ["gpu", "x"]}
    )
    Job.objects.filter(id="a").update(status="failed")

    def ids(query: str) -> list[str]:
        response = client.get(f"/api/v1/jobs{query}")
        assert response.status_code == 200, response.json()
        return [job["id"] for job in response.json()["results"]]

    assert ids("") == ["c", "b", "a"]
    assert ids("?type=command") == ["c", "a"]
    assert ids("?status=queued") == ["c", "b"]
    assert ids("?tag=gpu") == ["c", "a"]
    assert ids("?tag=gpu&tag=x") == ["c"]
    assert ids("?tag=gp") == []
    assert ids("?page_size=1&page=2") == ["b"]


def test_list_refuses_unknown_filter_values(client: APIClient) -> None:
    response = client.get("/api/v1/jobs?status=done")

    assert response.status_code == 400
    assert "succeeded" in response.json()["status"][0]


def test_unknown_job_is_a_404(client: APIClient) -> None:
    assert client.get("/api/v1/jobs/nope").status_code == 404


def test_listing_costs_the_same_queries_for_many_jobs(client: APIClient) -> None:
    for n in range(3):
        post(client, {"type": "command", "command": f"echo {n}"})
    with CaptureQueriesContext(connection) as few:
        client.get("/api/v1/jobs")
    for n in range(20):
        post(client, {"type": "command", "command": f"echo {n}"})
    with CaptureQueriesContext(connection) as many:
        client.get("/api/v1/jobs")

    assert len(many) == len(few)


def test_health_reports_database_broker_and_live_workers() -> None:
    response = APIClient().get("/api/v1/health")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "live_workers": 0,
    }


def test_health_is_503_when_the_broker_is_unreachable(settings: Any) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response = APIClient().get("/api/v1/health")

    assert response.status_code == 503
    assert response.json()["broker"].startswith("unreachable")
    assert response.json()["database"] == "ok"
