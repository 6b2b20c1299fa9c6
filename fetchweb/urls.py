from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.forms import ThrottledAuthenticationForm
from fetchweb import monitoring
from retrieval import console_views

urlpatterns = [
    path("", console_views.dashboard, name="home"),
    path("running/", console_views.dashboard_running, name="dashboard-running"),
    path(
        "login/",
        auth_views.LoginView.as_view(form_class=ThrottledAuthenticationForm),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", monitoring.healthz, name="healthz"),
    path("metrics", monitoring.metrics, name="metrics"),
    path("mailboxes/", include("retrieval.urls")),
    path("admin/", admin.site.urls),
    path("account/", include("accounts.urls")),
    path("", include("accounts.console_urls")),
    path("api/v1/", include("retrieval.api.urls")),
]
