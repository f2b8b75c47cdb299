from django.contrib import admin

from .models import Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin[Worker]):
    list_display = [
        "name",
        "hostname",
        "status",
        "last_heartbeat",
        "running",
        "concurrency",
        "started_at",
    ]
    list_filter = ["status"]
    search_fields = ["name", "hostname"]
