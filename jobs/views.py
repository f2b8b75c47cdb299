"""The job API: submit, list and inspect jobs."""

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError
from django.db.models import Prefetch, QuerySet, prefetch_related_objects
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from . import lifecycle
from .dispatch import publish_on_commit
from .models import Attempt, Job, JobType, Status
from .serializers import TAG_PATTERN, JobInputSerializer, JobSerializer

logger = logging.getLogger(__name__)


class JobList(generics.ListCreateAPIView[Job]):
    """List jobs, newest first (filters: status, type, tag, queue), or submit one."""

    serializer_class = JobSerializer

    def get_queryset(self) -> QuerySet[Job]:
        jobs = Job.objects.prefetch_related("attempt_set")
        params = self.request.query_params
        filters = {
            "status": ("status", Status.values),
            "type": ("type", JobType.values),
        }
        for param, (field, allowed) in filters.items():
            if param in params:
                jobs = jobs.filter(**{field: _one_of(param, params[param], allowed)})
        if "queue" in params:
            jobs = jobs.filter(queue=params["queue"])
        for tag in params.getlist("tag"):
            if not TAG_PATTERN.fullmatch(tag):
                raise ValidationError({"tag": [f"{tag!r} is not a valid tag."]})
            # Tags are a JSON list of restricted characters, so the quoted tag occurs
            # in its text exactly when it is an element; this works on every database.
            jobs = jobs.filter(tags__icontains=f'"{tag}"')
        return jobs

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = JobInputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        user = request.user if isinstance(request.user, User) else None
        job = Job(**incoming.validated_data, created_by=user)
        try:
            # One INSERT in autocommit: no transaction to open, and the message is
            # published as soon as the row is committed.
            job.save(force_insert=True)
        except IntegrityError:
            return Response(
                {"id": [f"A job with id {job.id!r} already exists."]},
                status=status.HTTP_409_CONFLICT,
            )
        publish_on_commit(job.id, 1, job.priority, job.queue)
        # A job inserted a moment ago has no attempts: answer without asking.
        prefetch_related_objects([job], Prefetch("attempt_set", Attempt.objects.none()))
        logger.info("Job %s: submitted (%s) by %s", job.id, job.type, request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    def get_serializer(self, *args: Any, **kwargs: Any) -> BaseSerializer[Job]:
        # The browsable API's form shows the input fields, not the output ones.
        if self.request.method == "POST" or kwargs.get("data") is not None:
            return JobInputSerializer(*args, **kwargs)
        return super().get_serializer(*args, **kwargs)


class JobDetail(generics.RetrieveAPIView[Job]):
    """One job with all its attempts."""

    serializer_class = JobSerializer
    queryset = Job.objects.prefetch_related("attempt_set")


class JobCancel(APIView):
    """Cancel a queued, retrying or running job. A running one is killed within
    about a heartbeat, on whatever worker runs it, and is not retried."""

    def post(self, request: Request, pk: str) -> Response:
        return _act(
            pk,
            lambda: lifecycle.cancel(pk, f"cancelled by {request.user}"),
            "only a queued, retrying or running job can be cancelled",
        )


class JobRetry(APIView):
    """Run a failed or cancelled job again, from a new attempt, with its retry policy."""

    def post(self, request: Request, pk: str) -> Response:
        return _act(
            pk,
            lambda: lifecycle.rerun(pk),
            "only a failed or cancelled job can be run again",
        )


def _act(job_id: str, action: Callable[[], str | None], rule: str) -> Response:
    """Apply a lifecycle action (it logs); 200 with the job, 409 saying why not, or 404."""
    try:
        refused_status = action()
    except Job.DoesNotExist:
        raise NotFound(f"No job with id {job_id!r}.") from None
    if refused_status is not None:
        return Response(
            {"detail": f"Job {job_id!r} is {refused_status}: {rule}."},
            status=status.HTTP_409_CONFLICT,
        )
    job = Job.objects.prefetch_related("attempt_set").get(id=job_id)
    return Response(JobSerializer(job).data)


def _one_of(param: str, value: str, allowed: list[str]) -> str:
    if value not in allowed:
        raise ValidationError({param: [f"Expected one of {', '.join(allowed)}."]})
    return value
