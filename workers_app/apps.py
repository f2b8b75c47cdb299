from django.apps import AppConfig


class WorkersAppConfig(AppConfig):
    name = "workers_app"
    verbose_name = "Workers"

    def ready(self) -> None:
        from . import heartbeat  # noqa: F401  (connects the worker signals)
