"""API errors: DRF's handler, plus a 503 when the database cannot be reached."""

import logging
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError
from rest_framework import status
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ParseError):
        return Response(
            {"detail": f"The request body is not valid JSON: {exc.detail}"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or restarting; the client may retry, nothing was stored.
        logger.warning("Database unavailable while serving %s: %s", _path(context), exc)
        return Response(
            {"detail": "The database is unavailable; retry shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, DatabaseError):
        logger.error("Database error while serving %s", _path(context), exc_info=exc)
    return drf_exception_handler(exc, context)


def _path(context: dict[str, Any]) -> str:
    request = context.get("request")
    return str(getattr(request, "path", "?"))
