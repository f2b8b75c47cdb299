from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from jobs.views import JobCancel, JobDetail, JobList, JobRetry
from workers_app.views import Health, WorkerDetail, WorkerList

api = [
    path("jobs", JobList.as_view(), name="job-list"),
    path("jobs/<str:pk>", JobDetail.as_view(), name="job-detail"),
    path("jobs/<str:pk>/cancel", JobCancel.as_view(), name="job-cancel"),
    path("jobs/<str:pk>/retry", JobRetry.as_view(), name="job-retry"),
    path("workers", WorkerList.as_view(), name="worker-list"),
    path("workers/<str:pk>", WorkerDetail.as_view(), name="worker-detail"),
    path("health", Health.as_view(), name="health"),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/api/v1/jobs", permanent=False)),
    path("api/v1/", include(api)),
    path("api-auth/", include("rest_framework.urls")),
    path("admin/", admin.site.urls),
]
