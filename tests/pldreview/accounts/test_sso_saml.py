"""Single sign-on through SAML 2.0, against a real identity provider on loopback (pysaml2, its own process).

The app reads the provider's metadata over HTTP and checks the signed response with python3-saml (xmlsec); the
person's side at the provider is played by ``requests``. Marked slow: xmlsec1 signs every response.
"""
from __future__ import annotations

import base64
import json
import shutil
import zlib
from urllib.parse import parse_qs, urlsplit

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth.models import User
from django.test import Client

from pldreview.models import LedgerEntry, Signature
from pldreview.roles import role_names
from rules.models import Rule
from tests.support.factories import teacher_rule
from tests.support.idp import saml_sign_in

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which("xmlsec1"), reason="xmlsec1 is absent (apt-get install xmlsec1)"),
]


def _facts(event: str) -> list[dict]:
    return [json.loads(e.payload)["facts"] for e in LedgerEntry.objects.filter(event=event)]


def test_a_mapped_person_signs_in_through_saml_and_gets_the_mapped_role(saml) -> None:
    saml.user("sally", groups=["pld-auditors"], first_name="Sally", last_name="Saml")
    client = Client()
    response = saml_sign_in(client, saml, "sally")
    assert response.status_code == 200, response.content[:600]
    user = User.objects.get(socialaccount__provider="saml-idp")
    assert (user.get_username(), user.get_full_name()) == ("sally", "Sally Saml")
    assert role_names(user) == ["Auditor"] and not user.has_usable_password()
    assert int(client.session["_auth_user_id"]) == user.pk
    assert _facts("security.sso_account_created")[0]["provider"] == "saml-idp"


def test_a_saml_person_none_of_whose_groups_maps_is_refused(saml) -> None:
    saml.user("gail", groups=["canteen"])
    response = saml_sign_in(Client(), saml, "gail")
    assert response.status_code == 403
    assert "None of your groups at the identity provider gives a role here" in response.content.decode()
    assert not SocialAccount.objects.exists()
    assert _facts("security.sso_refused")[0]["groups"] == ["canteen"]


def test_a_saml_reviewer_signs_an_approval_by_a_forced_new_login_at_the_identity_provider(saml, task, settings) -> None:
    # A role new from the mapping starts the cooldown like any other grant; this test is about the signing.
    settings.PLD_PRIVILEGE_COOLDOWN_HOURS = 0
    saml.user("sid", groups=["pld-reviewers"])
    client = Client()
    saml_sign_in(client, saml, "sid")
    rule = teacher_rule(task)
    start = client.post("/accounts/sso/confirm-to-sign/", {"next": f"/rules/{rule.pk}/"})
    assert start.status_code == 302
    request_xml = zlib.decompress(base64.b64decode(parse_qs(urlsplit(start["Location"]).query)["SAMLRequest"][0]),
                                  -15).decode()
    assert 'ForceAuthn="true"' in request_xml
    posted = saml.sign_in(start["Location"], "sid")
    back = client.post(urlsplit(posted.pop("action")).path, posted, follow=True)
    assert back.redirect_chain[-1][0] == f"/rules/{rule.pk}/"
    assert "identity confirmed by saml" in back.content.decode()
    response = client.post(f"/rules/{rule.pk}/approve/", {"lock_version": rule.lock_version})
    assert response.status_code in (200, 302), response.content[:400]
    assert Rule.objects.get(pk=rule.pk).status == Rule.Status.APPROVED
    assert Signature.objects.get().auth_method == "saml"
