"""The job API's input validation and output shape.

Input is strict: a field of the wrong JSON type is refused rather than coerced (DRF
would turn 5 into "5" for a string field), an unknown field is refused by name, and a
field that belongs to another job type is refused with the type it belongs to.
"""

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from rest_framework import serializers

from .durations import parse_duration
from .models import Attempt, Job, JobType

ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
TAG_PATTERN = re.compile(r"[A-Za-z0-9._:/=+@-]{1,64}")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
HEADER_NAME_PATTERN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
QUEUE_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_TAGS = 32

COMMON_FIELDS = frozenset(
    {"id", "type", "timeout", "retries", "priority", "tags", "queue"}
)
TYPE_FIELDS = {
    JobType.COMMAND: frozenset({"command", "env", "cwd"}),
    JobType.SCRIPT: frozenset({"script", "env", "cwd"}),
    JobType.HTTP: frozenset(
        {
            "url",
            "method",
            "headers",
            "body",
            "json",
            "expected_statuses",
            "connect_timeout",
            "read_timeout",
        }
    ),
}


class StrictCharField(serializers.CharField):
    """A string field that refuses numbers and booleans instead of coercing them."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictIntegerField(serializers.IntegerField):
    """An integer field that refuses strings, floats and booleans."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class DurationField(serializers.Field[float, Any, Any, Any]):
    default_error_messages = {"invalid": "{reason}"}

    def to_internal_value(self, data: Any) -> float:
        if not isinstance(data, str | int | float):
            self.fail(
                "invalid", reason='expected a duration such as "30s", "5m" or seconds'
            )
        try:
            return parse_duration(data)
        except ValueError as error:
            self.fail("invalid", reason=str(error))

    def to_representation(self, value: float) -> float:
        return value


def _string_map(**kwargs: Any) -> serializers.DictField:
    return serializers.DictField(child=StrictCharField(allow_blank=True), **kwargs)


class JobInputSerializer(serializers.Serializer[Job]):
    """Validates a submitted job; `validated_data` is ready for Job(**...)."""

    id = StrictCharField(required=False, max_length=128)
    type = serializers.ChoiceField(choices=JobType.choices)
    timeout = DurationField(required=False)
    retries = StrictIntegerField(required=False, min_value=0, max_value=100, default=0)
    priority = StrictIntegerField(required=False, min_value=0, max_value=9, default=0)
    tags = serializers.ListField(
        child=StrictCharField(), required=False, max_length=MAX_TAGS, default=list
    )
    queue = StrictCharField(required=False, default="default")
    # command and script
    command = StrictCharField(required=False, max_length=100_000)
    script = StrictCharField(required=False, max_length=1_000_000)
    env = _string_map(required=False)
    cwd = StrictCharField(required=False)
    # http
    url = StrictCharField(required=False, max_length=8192)
    method = StrictCharField(required=False)
    headers = _string_map(required=False)
    body = StrictCharField(required=False, allow_blank=True, max_length=10_000_000)
    json = serializers.JSONField(required=False)
    expected_statuses = serializers.ListField(
        child=StrictIntegerField(min_value=100, max_value=599),
        required=False,
        min_length=1,
    )
    connect_timeout = DurationField(required=False)
    read_timeout = DurationField(required=False)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object describing one job."]}
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown field."] for name in unknown}
            )
        return dict(super().to_internal_value(data))

    def validate_id(self, value: str) -> str:
        if not ID_PATTERN.fullmatch(value):
            raise serializers.ValidationError(
                "Use 1 to 128 letters, digits, '.', '_' or '-'."
            )
        return value

    def validate_tags(self, value: list[str]) -> list[str]:
        for tag in value:
            if not TAG_PATTERN.fullmatch(tag):
                raise serializers.ValidationError(
                    f"Tag {tag!r} is not valid: use 1 to 64 letters, digits or ._:/=+@-"
                )
        return list(dict.fromkeys(value))

    def validate_env(self, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not ENV_NAME_PATTERN.fullmatch(name):
                raise serializers.ValidationError(
                    f"{name!r} is not a variable name: use letters, digits and '_', "
                    "not starting with a digit."
                )
            if "\x00" in text:
                raise serializers.ValidationError(f"The value of {name} holds a NUL.")
        return value

    def validate_headers(self, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not HEADER_NAME_PATTERN.fullmatch(name):
                raise serializers.ValidationError(f"{name!r} is not a header name.")
            if any(c in text for c in "\r\n\x00"):
                raise serializers.ValidationError(
                    f"The value of {name} holds a line break or NUL."
                )
        return value

    def validate_queue(self, value: str) -> str:
        if not QUEUE_PATTERN.fullmatch(value):
            raise serializers.ValidationError(
                "Use 1 to 64 letters, digits, '.', '_' or '-'."
            )
        return value

    def validate_method(self, value: str) -> str:
        if value.upper() not in HTTP_METHODS:
            raise serializers.ValidationError(
                f"Expected one of {', '.join(HTTP_METHODS)}."
            )
        return value.upper()

    def validate_url(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise serializers.ValidationError(
                "Expected an absolute http:// or https:// URL."
            )
        return value

    def validate_cwd(self, value: str) -> str:
        if not value.startswith("/"):
            raise serializers.ValidationError("Expected an absolute path.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        job_type = JobType(attrs["type"])
        allowed = COMMON_FIELDS | TYPE_FIELDS[job_type]
        errors = {
            name: [f"Not a field of {job_type} jobs."]
            for name in sorted(set(self.initial_data) - allowed)
        }
        required = {JobType.COMMAND: "command", JobType.SCRIPT: "script"}.get(
            job_type, "url"
        )
        if required not in attrs:
            errors[required] = [f"This field is required for {job_type} jobs."]
        if "body" in attrs and "json" in attrs:
            errors["json"] = ["Give either body or json, not both."]
        if errors:
            raise serializers.ValidationError(errors)
        return self._to_job_fields(job_type, attrs)

    def _to_job_fields(
        self, job_type: JobType, attrs: dict[str, Any]
    ) -> dict[str, Any]:
        spec = {name: attrs[name] for name in TYPE_FIELDS[job_type] if name in attrs}
        fields = {
            "type": job_type,
            "spec": spec,
            "timeout": attrs.get("timeout", settings.INFINITRAIN["DEFAULT_TIMEOUT"]),
            "max_retries": attrs["retries"],
            "priority": attrs["priority"],
            "tags": attrs["tags"],
            "queue": attrs["queue"],
        }
        if "id" in attrs:
            fields["id"] = attrs["id"]
        return fields


class AttemptSerializer(serializers.ModelSerializer[Attempt]):
    result = serializers.SerializerMethodField()

    class Meta:
        model = Attempt
        fields = [
            "number",
            "worker",
            "started_at",
            "finished_at",
            "outcome",
            "error",
            "result",
        ]

    def get_result(self, attempt: Attempt) -> dict[str, Any]:
        return attempt.result(attempt.job.type)


class JobSerializer(serializers.ModelSerializer[Job]):
    """A job as the API shows it: its request, its state, its last result."""

    attempts_made = serializers.IntegerField(source="attempts")
    retries = serializers.IntegerField(source="max_retries")
    max_attempts = serializers.IntegerField()

    class Meta:
        model = Job
        fields = [
            "id",
            "type",
            "status",
            "spec",
            "timeout",
            "retries",
            "priority",
            "queue",
            "tags",
            "attempts_made",
            "max_attempts",
            "error",
            "worker",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def to_representation(self, instance: Job) -> dict[str, Any]:
        """The job's fields, its type's fields at top level, its result and attempts.

        Reads the job's attempts once: prefetch them (`attempt_set`) when listing.
        """
        data = dict(super().to_representation(instance))
        data.update(data.pop("spec"))
        attempts = list(instance.attempt_set.all())
        finished = [a for a in attempts if a.finished_at is not None]
        data["result"] = finished[-1].result(instance.type) if finished else None
        data["attempts"] = AttemptSerializer(attempts, many=True).data
        return data
