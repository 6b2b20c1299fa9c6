"""/api/v1/: every route written out (no router's format suffixes), so that the
authorization matrix (tests/security/matrix.py) names each one."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import AllowAny

from retrieval.api import views

app_name = "api"

urlpatterns = [
    path("mailboxes/", views.MailboxList.as_view(), name="mailbox-list"),
    path("mailboxes/<int:pk>/", views.MailboxDetail.as_view(), name="mailbox-detail"),
    path("mailboxes/<int:pk>/poll/", views.MailboxPoll.as_view(), name="mailbox-poll"),
    path("mailboxes/<int:pk>/test/", views.MailboxTest.as_view(), name="mailbox-test"),
    path(
        "mailboxes/<int:pk>/rules/", views.MailboxRules.as_view(), name="mailbox-rules"
    ),
    path("runs/", views.RunList.as_view(), name="run-list"),
    path("runs/<int:pk>/", views.RunDetail.as_view(), name="run-detail"),
    path("messages/", views.MessageList.as_view(), name="message-list"),
    path(
        "connection-tests/<int:pk>/",
        views.ConnectionTestDetail.as_view(),
        name="connection-test-detail",
    ),
    path("domains/", views.DomainList.as_view(), name="domain-list"),
    path("domains/<int:pk>/", views.DomainDetail.as_view(), name="domain-detail"),
    path("users/", views.UserList.as_view(), name="user-list"),
    path("users/<int:pk>/", views.UserDetail.as_view(), name="user-detail"),
    path("rcfile/import/", views.RcfileImport.as_view(), name="rcfile-import"),
    path("rcfile/export/", views.RcfileExport.as_view(), name="rcfile-export"),
    # The schema and its page describe the API, not anyone's data: open to all.
    path(
        "schema/",
        SpectacularAPIView.as_view(permission_classes=[AllowAny]),
        name="schema",
    ),
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", permission_classes=[AllowAny]
        ),
        name="docs",
    ),
]
