"""The worker registry API and the health endpoint."""

import logging

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from rest_framework import generics
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Worker
from .serializers import WorkerDetailSerializer, WorkerSerializer

logger = logging.getLogger(__name__)


class WorkerList(generics.ListAPIView[Worker]):
    """Every worker seen, with its status and last heartbeat."""

    serializer_class = WorkerSerializer
    queryset = Worker.objects.all()


class WorkerDetail(generics.RetrieveAPIView[Worker]):
    """One worker, with the attempts it runs now."""

    serializer_class = WorkerDetailSerializer
    queryset = Worker.objects.all()


class Health(APIView):
    """200 when the database and the broker answer, else 503. No authentication."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def get(self, request: Request) -> Response:
        database = _database_state()
        broker = _broker_state()
        healthy = database == "ok" and broker == "ok"
        body = {
            "status": "ok" if healthy else "unavailable",
            "database": database,
            "broker": broker,
            "live_workers": Worker.objects.live().count() if database == "ok" else None,
        }
        return Response(body, status=200 if healthy else 503)


def _database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as error:
        logger.warning("Health: database unreachable: %s", error)
        return f"unreachable: {error}".strip()
    return "ok"


def _broker_state() -> str:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
    )
    try:
        client.ping()
    except redis.RedisError as error:
        logger.warning("Health: broker unreachable: %s", error)
        return f"unreachable: {error}"
    finally:
        client.close()
    return "ok"
