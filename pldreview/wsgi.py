"""WSGI entry point (gunicorn -c gunicorn.conf.py pldreview.wsgi:application)."""
from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from pldreview.body_deadline import BodyDeadline

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pldreview.settings")
application = BodyDeadline(get_wsgi_application(), seconds=settings.PLD_REQUEST_BODY_SECONDS)
