from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import views as account_views
from accounts.forms import ThrottledAuthenticationForm
from fetchweb import monitoring

urlpatterns = [
    path("", account_views.home, name="home"),
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
]
