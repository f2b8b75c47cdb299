from rest_framework import serializers

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
            "last_heartbeat",
            "started_at",
            "queues",
            "concurrency",
            "running",
            "version",
        ]
