import signal
from typing import Any

from django.core.management.base import BaseCommand

from infinitrain_project.celery import app
from workers_app.monitor import Monitor


class Command(BaseCommand):
    help = (
        "Watch the workers: mark silent ones lost, recover their attempts, and "
        "re-publish messages the broker lost. Several may run at once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        monitor = Monitor(app)
        signal.signal(signal.SIGTERM, lambda *_: monitor.stop())
        signal.signal(signal.SIGINT, lambda *_: monitor.stop())
        monitor.run()
