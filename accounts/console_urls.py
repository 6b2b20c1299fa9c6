"""Domains and people in the browser (accounts/people_views.py), at the top level:
/people/, /domains/, /delivery-targets/, /audit/ and /account/time-zone/."""

from __future__ import annotations

from django.urls import path

from accounts import people_views as views

app_name = "people"

urlpatterns = [
    path("people/", views.people, name="people"),
    path("people/add/", views.person_add, name="person-add"),
    path("people/invite/", views.person_invite, name="person-invite"),
    path("people/<int:person_pk>/", views.person_detail, name="person"),
    path("people/<int:person_pk>/remove/", views.person_remove, name="person-remove"),
    path(
        "people/<int:person_pk>/resend-invitation/",
        views.person_invite_resend,
        name="person-resend-invitation",
    ),
    path("domains/", views.domains, name="domains"),
    path("domains/new/", views.domain_add, name="domain-add"),
    path("domains/<int:domain_pk>/", views.domain_edit, name="domain-edit"),
    path(
        "domains/<int:domain_pk>/defaults/",
        views.domain_defaults,
        name="domain-defaults",
    ),
    path("delivery-targets/", views.delivery_targets, name="delivery-targets"),
    path("audit/", views.audit_log, name="audit"),
    path("account/time-zone/", views.time_zone, name="time-zone"),
]
