from rest_framework import serializers

from jobs.models import Attempt

from .models import Worker


class WorkerSerializer(serializers.ModelSerializer[Worker]):
    status = serializers.CharField(source="effective_status")

    class Meta:
        model = Worker
        fields = [
            "name",
            "hostname",
            "pid",
            "status",
            "consuming",
            "last_heartbeat",
            "started_at",
            "queues",
            "concurrency",
            "running",
            "processed",
            "failed",
            "version",
        ]


class RunningAttemptSerializer(serializers.ModelSerializer[Attempt]):
    job = serializers.CharField(source="job_id")

    class Meta:
        model = Attempt
        fields = ["job", "number", "started_at"]


class WorkerDetailSerializer(WorkerSerializer):
    """A worker with the attempts it runs now (from the attempts' records)."""

    running_attempts = serializers.SerializerMethodField()

    class Meta(WorkerSerializer.Meta):
        fields = [*WorkerSerializer.Meta.fields, "running_attempts"]

    def get_running_attempts(self, worker: Worker) -> list[dict[str, object]]:
        attempts = Attempt.objects.filter(worker=worker.name, finished_at__isnull=True)
        return list(RunningAttemptSerializer(attempts, many=True).data)
