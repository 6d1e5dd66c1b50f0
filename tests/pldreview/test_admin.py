"""The Django admin lets staff look at every record of the three apps and change none of them."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory

from pldreview.jobs import job_create
from tests.support.factors import django_admin_on, log_in_with_factor, totp_enrol  # noqa: F401

APPS = {"rules", "evaluation", "pldreview"}


def _registered() -> list[tuple[type, admin.ModelAdmin]]:
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in APPS]


def test_every_model_of_the_apps_has_an_admin() -> None:
    from django.apps import apps

    models = {model for model in apps.get_models()
              if model._meta.app_label in APPS and not model.__name__.startswith("Historical")}
    assert models - {model for model, _admin in _registered()} == set()


@pytest.mark.django_db
def test_no_admin_adds_changes_or_deletes(admin_user) -> None:
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    admin_user.is_staff = admin_user.is_superuser = True
    for model, model_admin in _registered():
        assert model_admin.has_view_permission(request), model
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model
        assert not model_admin.get_actions(request), model


@pytest.mark.django_db
@pytest.mark.usefixtures("django_admin_on")
def test_staff_read_every_list_and_a_record_but_cannot_post(admin_user, tmp_path) -> None:
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    job = job_create(kind="tests.pldreview.handlers.count_to", title="Count", params={"n": 1, "dir": str(tmp_path)})
    client = Client()
    # Staff get in through the app's login with their second factor, like everyone (test_admin_door.py).
    assert log_in_with_factor(client, "adam", totp_enrol(admin_user)).status_code == 302
    for model, _admin in _registered():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(url).status_code == 200, url
    page = client.get(f"/admin/pldreview/job/{job.pk}/change/")
    assert page.status_code == 200 and b"Count" in page.content and b'name="_save"' not in page.content
    assert client.post(f"/admin/pldreview/job/{job.pk}/change/", {"title": "Renamed"}).status_code == 403
    assert client.post(f"/admin/pldreview/job/{job.pk}/delete/", {"post": "yes"}).status_code == 403
    job.refresh_from_db()
    assert job.title == "Count"
