from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import views as account_views

urlpatterns = [
    path("", account_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", account_views.healthz, name="healthz"),
    path("mailboxes/", include("retrieval.urls")),
    path("admin/", admin.site.urls),
    path("account/", include("accounts.urls")),
    path("api/v1/", include("retrieval.api.urls")),
]
