from django.contrib import admin

from .models import Attempt, Job


class AttemptInline(admin.TabularInline[Attempt, Job]):
    model = Attempt
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "number",
        "worker",
        "outcome",
        "error",
        "exit_code",
        "status_code",
        "started_at",
        "finished_at",
    )


@admin.register(Job)
class JobAdmin(admin.ModelAdmin[Job]):
    list_display = [
        "id",
        "type",
        "status",
        "priority",
        "queue",
        "attempts",
        "worker",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "type", "queue"]
    search_fields = ["id", "worker"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "attempts",
        "lease_token",
        "not_before",
        "worker",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ]
    inlines = [AttemptInline]


@admin.register(Attempt)
class AttemptAdmin(admin.ModelAdmin[Attempt]):
    list_display = ["job", "number", "worker", "outcome", "started_at", "finished_at"]
    list_filter = ["outcome"]
    search_fields = ["job__id", "worker"]
    raw_id_fields = ["job"]
