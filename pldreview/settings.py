"""PLD Review settings, read from the environment with safe defaults.

Every variable is listed in docs/settings.md (tests/pldreview/test_settings_doc.py keeps the two in step).
Values that do not parse stop the process at start-up.
"""
from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from pldreview import local_secrets
from pldreview.env import (
    env_bool,
    env_float,
    env_group_roles,
    env_int,
    env_json_list,
    env_list,
    env_role_pairs,
    env_str,
    env_teacher_endpoints,
    teacher_endpoints_checked,
)
from pldreview.roles import ROLES

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PLD_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    # scripts/demo keeps this file, so management commands in the demo's folder need no variables.
    kept = local_secrets.secret_read(VAR_DIR, local_secrets.SECRET_KEY)
    if kept:
        return kept
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off "
            f"(or keep one in {VAR_DIR / local_secrets.SECRET_KEY}, as scripts/demo does)"
        )
    # Settings only read (pldreview/local_secrets.py): scripts/setup keeps a development key so sessions survive
    # restarts. Without one, this process signs with a key of its own, and its sessions end when it does.
    return local_secrets.secret_read(VAR_DIR, local_secrets.DEV_SECRET_KEY) or secrets.token_urlsafe(50)


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # allauth's sessions page
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "axes",
    "csp",
    "django_htmx",
    "template_partials",
    "simple_history",
    "django_tasks",
    "django_tasks_db",
    "pldreview",
    "rules",
    "evaluation",
    # After allauth and axes: its admin module removes their models from Django admin.
    "pldreview.accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # PLD_WEB_ROLE=api: the classify API's own process serves nothing else (scripts/demo).
    "evaluation.production.api.ApiOnlyMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything that may read the body (CSRF reads a form's): a body over its limit is refused unread.
    "pldreview.accounts.middleware.RequestSizeMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Every view needs a login unless marked @login_not_required (login, the token API, the "not offered" pages).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Before the session limits: an htmx request whose session ended gets HX-Redirect, not a login page swapped in.
    "django_htmx.middleware.HtmxMiddleware",
    "pldreview.accounts.middleware.SessionLimitsMiddleware",
    "pldreview.accounts.middleware.AccountGateMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks: it turns a lockout raised by its backend into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pldreview.urls"
WSGI_APPLICATION = "pldreview.wsgi.application"
ASGI_APPLICATION = "pldreview.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "pldreview.context_processors.roles",
            ],
        },
    },
]

_DEFAULT_DB_URL = f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
# Each gunicorn thread keeps its connection between requests (PLD_DB_CONN_MAX_AGE seconds; 0 closes it after
# every request). Opening one per request cost a refusal of the classify API about a third of its time (SQLite:
# the file, Django's SQL functions, the PRAGMAs below), CPU taken from the model (docs/benchmarks.md). The health
# check replaces a connection a database restart broke, before the request uses it.
DATABASES = {"default": dj_database_url.parse(
    env_str("DATABASE_URL", _DEFAULT_DB_URL), conn_max_age=env_int("PLD_DB_CONN_MAX_AGE", 60, minimum=0),
    conn_health_checks=True,
)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while the job worker writes; IMMEDIATE avoids
    # "database is locked" when a read transaction later tries to write.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # ASVS 2.1.1: at least 12 characters. Applies when a password is set or changed, not at login.
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "pld-home"
LOGOUT_REDIRECT_URL = "login"

# --- Accounts: django-allauth (login, TOTP + recovery codes, sessions), django-axes (lockout) ---
AUTHENTICATION_BACKENDS = [
    # First, as django-axes asks: it refuses a locked-out username or address before any password check.
    "axes.backends.AxesStandaloneBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_ADAPTER = "pldreview.accounts.adapter.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_SESSION_REMEMBER = False  # every session ends when the browser closes
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
# Failed attempts are limited by delays (pldreview/accounts/lockout.py, carried by django-axes); allauth's own
# cache-based login limit would answer first with a different message and counts nothing else, so it is off.
# It also switches off allauth's per-user limit on codes: the delays count codes instead.
ACCOUNT_RATE_LIMITS = {"login_failed": False}
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
# Passkeys (WebAuthn) are a second factor at login and a way to sign; each use must verify the person at the
# authenticator (PIN or biometric), so a passkey alone is two components (possession and knowledge or
# inherence, Part 11 §11.200). Login stays username and password first: no passwordless login.
MFA_WEBAUTHN_USER_VERIFICATION = "required"
MFA_PASSKEY_LOGIN_ENABLED = False
MFA_TOTP_ISSUER = "PLD Review"
MFA_RECOVERY_CODES_SHOW_ONCE = True
# The second-factor forms check the delay after failed attempts before the code.
MFA_FORMS = {
    "authenticate": "pldreview.accounts.mfa_forms.DelayedAuthenticateForm",
    "reauthenticate": "pldreview.accounts.mfa_forms.DelayedReauthenticateForm",
}
# Sessions are recorded at login; tracking every request would cost two queries per page.
USERSESSIONS_TRACK_ACTIVITY = False

# --- Single sign-on: OpenID Connect through allauth (docs/security.md, "Single sign-on") ---
SOCIALACCOUNT_ADAPTER = "pldreview.accounts.adapter.SocialAccountAdapter"
# An identity provider's account is never joined to a local one by e-mail (verified or not): a person signing in
# through it gets an account of their own, or none.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_REQUIRED = False
SOCIALACCOUNT_QUERY_EMAIL = False
# Access and refresh tokens are used once, at sign-in, and never kept.
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10
# The sign-in and signing buttons POST to allauth's provider URLs; a GET there asks first.
SOCIALACCOUNT_LOGIN_ON_GET = False
# One OpenID Connect provider, configured by the operator: its issuer URL (discovery document under
# /.well-known/openid-configuration), this app's client id and secret at it, and the name on the buttons.
# Authorization-code flow with PKCE; the client secret is posted to the token endpoint.
PLD_OIDC_SERVER_URL = env_str("PLD_OIDC_SERVER_URL")
PLD_OIDC_CLIENT_ID = env_str("PLD_OIDC_CLIENT_ID")
PLD_OIDC_CLIENT_SECRET = env_str("PLD_OIDC_CLIENT_SECRET")
PLD_OIDC_NAME = env_str("PLD_OIDC_NAME", "your organisation's sign-in")
if PLD_OIDC_SERVER_URL and not PLD_OIDC_CLIENT_ID:
    raise ImproperlyConfigured("PLD_OIDC_SERVER_URL needs PLD_OIDC_CLIENT_ID (and PLD_OIDC_CLIENT_SECRET)")
SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": [{
    "provider_id": "idp", "name": PLD_OIDC_NAME, "client_id": PLD_OIDC_CLIENT_ID,
    "secret": PLD_OIDC_CLIENT_SECRET,
    "settings": {"server_url": PLD_OIDC_SERVER_URL, "token_auth_method": "client_secret_post"},
}] if PLD_OIDC_SERVER_URL else []}}
# One SAML 2.0 identity provider, configured by the operator: its metadata URL (fetched over HTTPS; its signing
# certificate comes from there), the organisation slug in this app's URLs (/accounts/saml/<slug>/acs/), the name
# on the button. Responses and assertions must be signed; sign-ins the identity provider starts are refused.
PLD_SAML_METADATA_URL = env_str("PLD_SAML_METADATA_URL")
SAML_ATTRIBUTES = {
    key: [name, f"urn:mace:dir:attribute-def:{name}", f"urn:oid:{oid}"]
    for key, name, oid in [
        ("uid", "uid", "0.9.2342.19200300.100.1.1"), ("username", "uid", "0.9.2342.19200300.100.1.1"),
        ("email", "mail", "0.9.2342.19200300.100.1.3"), ("first_name", "givenName", "2.5.4.42"),
        ("last_name", "sn", "2.5.4.4"),
    ]
}
PLD_SAML_ENTITY_ID = env_str("PLD_SAML_ENTITY_ID")
PLD_SAML_ORG = env_str("PLD_SAML_ORG", "idp")
PLD_SAML_NAME = env_str("PLD_SAML_NAME", "your organisation's SAML sign-in")
if PLD_SAML_METADATA_URL and not PLD_SAML_ENTITY_ID:
    raise ImproperlyConfigured("PLD_SAML_METADATA_URL needs PLD_SAML_ENTITY_ID (the identity provider's entity id)")
SOCIALACCOUNT_PROVIDERS["saml"] = {"provider_class": "pldreview.accounts.saml.PldSAMLProvider", "APPS": [{
    "name": PLD_SAML_NAME, "provider_id": "saml-idp", "client_id": PLD_SAML_ORG,
    "settings": {
        # Attribute names as identity providers commonly send them (LDAP names, plain or as URNs); groups: below.
        "attribute_mapping": SAML_ATTRIBUTES,
        "idp": {"entity_id": PLD_SAML_ENTITY_ID, "metadata_url": PLD_SAML_METADATA_URL},
        "advanced": {"want_assertion_signed": True, "want_message_signed": True, "strict": True,
                     "reject_idp_initiated_sso": True},
    },
}] if PLD_SAML_METADATA_URL else []}
# The claim (SAML: the attribute) holding the person's groups at the identity provider, and which group gives which role
# ("idp-group=Reviewer,other-group=Auditor"). A person none of whose groups maps is refused at sign-in.
PLD_SSO_GROUPS_CLAIM = env_str("PLD_SSO_GROUPS_CLAIM", "groups")
PLD_SSO_GROUP_ROLES = env_group_roles("PLD_SSO_GROUP_ROLES", roles=ROLES)
# Whether a person the identity provider vouches for (with a mapped group) gets an account at first sign-in;
# off: only people who signed in before while it was on may sign in.
PLD_SSO_AUTO_CREATE = env_bool("PLD_SSO_AUTO_CREATE", False)

# A user without a second factor is sent to enrolment and can do nothing else (staff and superusers always).
PLD_MFA_REQUIRED = env_bool("PLD_MFA_REQUIRED", not DEBUG)
# Django admin (/admin/, read-only) exists only when set; its login is then the app's own, with the second factor.
PLD_DJANGO_ADMIN = env_bool("PLD_DJANGO_ADMIN", False)
# Guessing stops (docs/security.md): after PLD_LOGIN_MAX_FAILURES failed passwords or codes for an account at an
# address (or on a device, or with unknown usernames at an address), or PLD_LOGIN_ACCOUNT_MAX_FAILURES for an
# account from anywhere without its device cookie, each further attempt waits PLD_LOGIN_DELAY_SECONDS, doubling
# after each failure, at most PLD_LOGIN_DELAY_MAX_SECONDS. Failures are forgotten after
# PLD_LOGIN_FAILURE_WINDOW_MINUTES without any.
PLD_LOGIN_MAX_FAILURES = env_int("PLD_LOGIN_MAX_FAILURES", 10, minimum=1)
PLD_LOGIN_ACCOUNT_MAX_FAILURES = env_int("PLD_LOGIN_ACCOUNT_MAX_FAILURES", 50, minimum=1)
PLD_LOGIN_DELAY_SECONDS = env_int("PLD_LOGIN_DELAY_SECONDS", 1, minimum=1)
PLD_LOGIN_DELAY_MAX_SECONDS = env_int("PLD_LOGIN_DELAY_MAX_SECONDS", 900, minimum=1)
PLD_LOGIN_FAILURE_WINDOW_MINUTES = env_int("PLD_LOGIN_FAILURE_WINDOW_MINUTES", 15, minimum=1)
# The signed cookie a successful login leaves, so failures elsewhere do not hold that browser back.
PLD_DEVICE_COOKIE_DAYS = env_int("PLD_DEVICE_COOKIE_DAYS", 30, minimum=1)
# Anonymous security events are counted per account (or unknown account) and address over this window; the
# ledger gets the first at once and the counts when it closes (pldreview/accounts/security_log.py).
PLD_SECURITY_EVENT_WINDOW_MINUTES = env_int("PLD_SECURITY_EVENT_WINDOW_MINUTES", 15, minimum=1)
# Need-to-know (docs/security.md): Reviewers see only the tasks they are members of; Auditors see every task
# unless this is on, then only theirs too. Admins always see every task.
PLD_AUDITORS_SCOPED = env_bool("PLD_AUDITORS_SCOPED", False)
PLD_SESSION_IDLE_MINUTES = env_int("PLD_SESSION_IDLE_MINUTES", 30, minimum=1)
PLD_SESSION_MAX_HOURS = env_int("PLD_SESSION_MAX_HOURS", 12, minimum=1)
# Separation of duties: role pairs one account never holds together, and how long an account created,
# activated or granted a role stays unable to be the second person of any two-person control.
PLD_INCOMPATIBLE_ROLES = env_role_pairs(
    "PLD_INCOMPATIBLE_ROLES", "Reviewer+Admin,Auditor+Reviewer,Auditor+Admin", roles=ROLES
)
PLD_PRIVILEGE_COOLDOWN_HOURS = env_int("PLD_PRIVILEGE_COOLDOWN_HOURS", 24, minimum=0)

AXES_ENABLED = env_bool("PLD_LOCKOUT_ENABLED", True)
# django-axes' backend, handler, signals and middleware carry the delays; its own lockout is replaced by them.
AXES_HANDLER = "pldreview.accounts.lockout.DelayHandler"
AXES_LOCK_OUT_AT_FAILURE = False
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_COOLOFF_TIME = timedelta(minutes=PLD_LOGIN_FAILURE_WINDOW_MINUTES)
AXES_USE_ATTEMPT_EXPIRATION = True
AXES_RESET_ON_SUCCESS = True
AXES_USERNAME_CALLABLE = "pldreview.accounts.lockout.attempted_username"
AXES_LOCKOUT_CALLABLE = "pldreview.accounts.lockout.lockout_response"
AXES_ENABLE_ADMIN = False
AXES_VERBOSE = False
AXES_IPWARE_PROXY_COUNT = 1 if env_bool("PLD_BEHIND_PROXY", False) else None

SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# The absolute lifetime bounds the stored session too; the idle limit is enforced by SessionLimitsMiddleware.
SESSION_COOKIE_AGE = PLD_SESSION_MAX_HOURS * 3600

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Dates read the same on every page and in every role: "2026-11-29 22:46 UTC" (pldreview/formats/en/formats.py).
FORMAT_MODULE_PATH = ["pldreview.formats"]
DATETIME_FORMAT = SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
DATE_FORMAT = SHORT_DATE_FORMAT = "Y-m-d"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
MEDIA_ROOT = Path(env_str("PLD_MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"
# Requests are limited by RequestSizeMiddleware: PLD_REQUEST_MAX_BYTES everywhere, PLD_UPLOAD_MAX_BYTES on the
# pages that take a file (the report-verify upload and the dataset import).
PLD_REQUEST_MAX_BYTES = env_int("PLD_REQUEST_MAX_BYTES", 2_500_000, minimum=1024)
PLD_UPLOAD_MAX_BYTES = env_int("PLD_UPLOAD_MAX_BYTES", 50 * 1024 * 1024, minimum=1024)
PLD_UPLOAD_URL_NAMES = ("pld-report-verify", "pld-dataset-import")
# Under gunicorn the whole body must arrive within this many seconds (pldreview/body_deadline.py): a client that
# sends slowly holds a worker thread at most this long.
PLD_REQUEST_BODY_SECONDS = env_int("PLD_REQUEST_BODY_SECONDS", 30, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = PLD_REQUEST_MAX_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = PLD_REQUEST_MAX_BYTES

# Production hardening: on by default whenever DEBUG is off (``check --deploy`` passes).
SECURE_SSL_REDIRECT = env_bool("PLD_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("PLD_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("PLD_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
# Preload lists are hard to leave; only an organisation that decided so asks for it.
SECURE_HSTS_PRELOAD = env_bool("PLD_HSTS_PRELOAD", False)
# ``check --deploy`` warns when preload is off; leaving it off is the decision above, not an oversight.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("PLD_BEHIND_PROXY", False) else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True

def _sso_origins() -> list[str]:
    """Return the identity provider's origin (scheme, host, port) when single sign-on is configured."""
    from urllib.parse import urlsplit

    parts = urlsplit(PLD_OIDC_SERVER_URL)
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme and parts.netloc else []


# Content-Security-Policy (django-csp 4): scripts only from our own static files, never inline or eval'd.
# Inline style attributes stay allowed (a few templates use them); they cannot run code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        # The SSO sign-in and signing buttons post here and are redirected to the identity provider: browsers
        # hold a form's redirects to form-action too.
        "form-action": ["'self'", *_sso_origins()],
        "frame-ancestors": ["'none'"],
    }
}

# Background jobs: django-tasks with the database backend, worker = ``manage.py db_worker``.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("PLD_LOG_LEVEL", "INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        # The openai client logs every request at INFO through its bundled httpx fork.
        "httpx2": {"level": "WARNING"},
        "openai": {"level": "WARNING"},
        # WeasyPrint narrates every rendering step at INFO; pyHanko logs an untrusted signer (a verdict
        # the report verifier states itself) as a warning with a traceback.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        "pyhanko.sign.validation": {"level": "ERROR"},
        # django-axes narrates every login at INFO; the ledger keeps the security events.
        "axes": {"level": "WARNING"},
    },
}

# --- PLD Review -----------------------------------------------------------------------------
# The teacher: named OpenAI-compatible endpoints set by operators, never typed into a form. JSON, e.g.
# {"local": {"model": "gemma-3-270m-q4_k_m"}, "openai": {"base_url": "https://api.openai.com/v1",
#  "model": "gpt-4o-mini", "api_key_env": "OPENAI_API_KEY"}}. An empty base URL = the embedded local
# teacher (``python -m llama_cpp.server`` serving the bundled model on loopback). A key stays in the
# environment variable an endpoint names and is sent to that endpoint only.
# Shorthand for one endpoint: PLD_TEACHER_BASE_URL / PLD_TEACHER_MODEL / PLD_TEACHER_API_KEY (its key).
PLD_TEACHER_BASE_URL = env_str("PLD_TEACHER_BASE_URL")
PLD_TEACHER_MODEL = env_str("PLD_TEACHER_MODEL", "gemma-3-270m-q4_k_m")
if env_str("PLD_TEACHER_ENDPOINTS").strip():
    if PLD_TEACHER_BASE_URL:
        raise ImproperlyConfigured("Set PLD_TEACHER_ENDPOINTS or the PLD_TEACHER_BASE_URL shorthand, not both")
    PLD_TEACHER_ENDPOINTS = env_teacher_endpoints("PLD_TEACHER_ENDPOINTS")
else:
    PLD_TEACHER_ENDPOINTS = teacher_endpoints_checked("PLD_TEACHER_BASE_URL", {
        "default" if PLD_TEACHER_BASE_URL else "local": {
            "base_url": PLD_TEACHER_BASE_URL,
            "model": PLD_TEACHER_MODEL,
            "api_key_env": "PLD_TEACHER_API_KEY" if env_str("PLD_TEACHER_API_KEY") else "",
        }
    })
PLD_TEACHER_DEFAULT_ENDPOINT = env_str("PLD_TEACHER_DEFAULT_ENDPOINT", next(iter(PLD_TEACHER_ENDPOINTS)))
if PLD_TEACHER_DEFAULT_ENDPOINT not in PLD_TEACHER_ENDPOINTS:
    raise ImproperlyConfigured(
        f"PLD_TEACHER_DEFAULT_ENDPOINT={PLD_TEACHER_DEFAULT_ENDPOINT!r} is not one of PLD_TEACHER_ENDPOINTS "
        f"({', '.join(PLD_TEACHER_ENDPOINTS)})"
    )
PLD_TEACHER_TEMPERATURE = env_float("PLD_TEACHER_TEMPERATURE", 0.0)
PLD_TEACHER_TIMEOUT = env_float("PLD_TEACHER_TIMEOUT", 120.0)
PLD_TEACHER_MAX_RETRIES = env_int("PLD_TEACHER_MAX_RETRIES", 4, minimum=0)
PLD_TEACHER_CONCURRENCY = env_int("PLD_TEACHER_CONCURRENCY", 2, minimum=1)
PLD_TEACHER_MAX_REQUESTS = env_int("PLD_TEACHER_MAX_REQUESTS", 2000, minimum=1)
PLD_TEACHER_MAX_TOKENS = env_int("PLD_TEACHER_MAX_TOKENS", 2_000_000, minimum=1)
PLD_LOCAL_TEACHER_HOST = "127.0.0.1"
PLD_LOCAL_TEACHER_PORT = env_int("PLD_LOCAL_TEACHER_PORT", 8077, minimum=1)

# The student: a GGUF run in-process by llama.cpp. Empty path = the bundled Gemma 3 270M Q4_K_M.
PLD_STUDENT_MODEL_PATH = env_str("PLD_STUDENT_MODEL_PATH")
PLD_STUDENT_N_CTX = env_int("PLD_STUDENT_N_CTX", 16384, minimum=512)
PLD_STUDENT_THREADS = env_int("PLD_STUDENT_THREADS", 2, minimum=1)
PLD_STUDENT_SEED = env_int("PLD_STUDENT_SEED", 0, minimum=0)
# Warm starts: saved states after a rule prefix (docs/student.md), and whether this process (the web app
# or the job worker, set by scripts/demo) restores the production versions' states when it starts.
PLD_STUDENT_STATE_DIR = Path(env_str("PLD_STUDENT_STATE_DIR", str(VAR_DIR / "student-states")))
PLD_STUDENT_PRELOAD = env_bool("PLD_STUDENT_PRELOAD", False)
# Where decisions are computed (docs/student.md, "Student backend"): llama_cpp = in this process (exact, warm
# starts); server = an OpenAI-compatible inference server (llama.cpp's llama-server, vLLM, llama_cpp.server)
# scoring labels from top log-probabilities of generated positions. The local GGUF above still tokenizes, so
# both backends build the same prompt tokens.
PLD_STUDENT_BACKEND = env_str("PLD_STUDENT_BACKEND", "llama_cpp")
if PLD_STUDENT_BACKEND not in {"llama_cpp", "server"}:
    raise ImproperlyConfigured(f"PLD_STUDENT_BACKEND={PLD_STUDENT_BACKEND!r} must be llama_cpp or server")
PLD_STUDENT_BASE_URL = env_str("PLD_STUDENT_BASE_URL")
PLD_STUDENT_API_KEY = env_str("PLD_STUDENT_API_KEY")
PLD_STUDENT_MODEL = env_str("PLD_STUDENT_MODEL")
if PLD_STUDENT_BACKEND == "server" and not (PLD_STUDENT_BASE_URL and PLD_STUDENT_MODEL):
    raise ImproperlyConfigured("PLD_STUDENT_BACKEND=server needs PLD_STUDENT_BASE_URL and PLD_STUDENT_MODEL")
PLD_STUDENT_TIMEOUT = env_float("PLD_STUDENT_TIMEOUT", 60.0)
# Retried on timeouts, lost connections, 429 and 5xx with the openai client's exponential backoff.
PLD_STUDENT_MAX_RETRIES = env_int("PLD_STUDENT_MAX_RETRIES", 3, minimum=0)
# How many top log-probabilities a server returns per position. The bundled base model ranks the NDA labels'
# first tokens 8th to 294th after "Answer:", so 20 (vLLM's default --max-logprobs) would leave every decision
# approximate; llama_cpp.server takes any number, vLLM up to its --max-logprobs (docs/student.md).
PLD_STUDENT_TOP_LOGPROBS = env_int("PLD_STUDENT_TOP_LOGPROBS", 1000, minimum=1)
# Which requests a web process serves: all (default), pages (the classify API answers 421 and names
# PLD_API_BASE_URL; the model is never loaded) or api (only /api/: scripts/demo runs it as its own process).
PLD_WEB_ROLE = env_str("PLD_WEB_ROLE", "all")
if PLD_WEB_ROLE not in {"all", "pages", "api"}:
    raise ImproperlyConfigured(f"PLD_WEB_ROLE={PLD_WEB_ROLE!r} must be all, pages or api")
PLD_API_BASE_URL = env_str("PLD_API_BASE_URL")
# Webhooks (docs/production.md): an integrator's URL hears of overridden decisions and stopped tasks. https only;
# http is accepted for loopback addresses (127.0.0.1, ::1, localhost) only when this is on (tests, local demos).
PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK = env_bool("PLD_WEBHOOK_ALLOW_HTTP_LOOPBACK", False)
# A delivery is tried this many times in all, waiting PLD_WEBHOOK_BACKOFF_SECONDS, then twice as long each time.
PLD_WEBHOOK_MAX_ATTEMPTS = env_int("PLD_WEBHOOK_MAX_ATTEMPTS", 6, minimum=1)
PLD_WEBHOOK_BACKOFF_SECONDS = env_int("PLD_WEBHOOK_BACKOFF_SECONDS", 30, minimum=0)
PLD_WEBHOOK_TIMEOUT_SECONDS = env_float("PLD_WEBHOOK_TIMEOUT_SECONDS", 5.0)
# cot runs: the most reasoning tokens the student writes before its label is scored (lm-eval-harness's
# default generation budget); a run records the value it used.
PLD_COT_MAX_TOKENS = env_int("PLD_COT_MAX_TOKENS", 256, minimum=1)
# Sharded evaluation runs (docs/deploy.md): a run is cut into shards of whole shared-context groups of about
# this many examples, each its own django-tasks task; a worker holds a shard under a lease it renews while it
# decides, and a shard whose lease ran out (its worker died) is queued again for a live worker.
PLD_SHARD_EXAMPLES = env_int("PLD_SHARD_EXAMPLES", 16, minimum=1)
PLD_SHARD_LEASE_SECONDS = env_int("PLD_SHARD_LEASE_SECONDS", 120, minimum=2)

# Review: distinct approvals (by people other than the author) an edited or hand-written rule needs.
PLD_REQUIRED_APPROVALS = env_int("PLD_REQUIRED_APPROVALS", 1, minimum=1)
PLD_UNDO_WINDOW_SECONDS = env_int("PLD_UNDO_WINDOW_SECONDS", 120, minimum=0)


def _signing_reauth() -> str:
    """Return PLD_SIGNING_REAUTH as written (``each`` or ``window:N``), refusing anything else."""
    raw = env_str("PLD_SIGNING_REAUTH", "each").strip().lower()
    if raw == "each":
        return raw
    kind, _, minutes = raw.partition(":")
    if kind == "window" and minutes.isdigit() and int(minutes) >= 1:
        return f"window:{int(minutes)}"
    raise ImproperlyConfigured(f"PLD_SIGNING_REAUTH={raw!r}: use 'each' or 'window:N' (N minutes, at least 1)")


# Electronic signatures: re-enter the password for each signing, or once per N minutes of a session.
PLD_SIGNING_REAUTH = _signing_reauth()
# A re-authentication at the identity provider (or a passkey) made for signing is good for one signing within
# this many seconds.
PLD_SIGNING_PROOF_SECONDS = env_int("PLD_SIGNING_PROOF_SECONDS", 300, minimum=30)

# Promotion gate: a candidate's macro-F1 may be at most this much below production's.
PLD_PROMOTION_MARGIN = env_float("PLD_PROMOTION_MARGIN", 0.0)
PLD_API_MAX_BODY_BYTES = env_int("PLD_API_MAX_BODY_BYTES", 256 * 1024, minimum=1024)
# Per API token unless the token says otherwise (docs/production.md).
PLD_API_DEFAULT_RATE_LIMIT = env_int("PLD_API_DEFAULT_RATE_LIMIT", 60, minimum=1)
# Admission control (evaluation/production/admission.py, docs/production.md): how many classify calls one process
# lets wait for the student while one is decided; one more is answered 503 with Retry-After at once. Start gunicorn
# with more threads than this + 1, so refusals, /healthz, /readyz and (PLD_WEB_ROLE=all) pages always find a
# free thread.
PLD_API_MAX_QUEUE = env_int("PLD_API_MAX_QUEUE", 2, minimum=0)
# How many nice levels below the API's request threads its decision thread runs (Linux; 0: the same). The model
# keeps both cores busy; a 429 or a full queue's 503 then answers at once instead of sharing a core with it
# (evaluation/production/decision_thread.py).
PLD_DECISION_NICE = env_int("PLD_DECISION_NICE", 9, minimum=0)

# The decision log (docs/production.md): how a classify call's input is kept — full, hash or redact; a task's
# DecisionLogPolicy overrides it — and for how many days calls are kept before purge_decisions removes them.
PLD_DECISION_INPUT_RETENTION = env_str("PLD_DECISION_INPUT_RETENTION", "full")
if PLD_DECISION_INPUT_RETENTION not in {"full", "hash", "redact"}:
    raise ImproperlyConfigured(
        f"PLD_DECISION_INPUT_RETENTION={PLD_DECISION_INPUT_RETENTION!r} must be full, hash or redact"
    )
PLD_DECISION_RETENTION_DAYS = env_int("PLD_DECISION_RETENTION_DAYS", 365, minimum=1)
# Regular expressions whose matches "redact" replaces with [REDACTED]: a JSON list of patterns.
PLD_DECISION_REDACT_PATTERNS = env_json_list("PLD_DECISION_REDACT_PATTERNS", [
    r"[\w.+-]+@[\w-]+\.[\w.-]+",  # e-mail addresses
    r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",  # IBANs
    r"\+?\d[\d ()./-]{6,}\d",  # phone, account and card numbers
])
# The production page's alert (docs/production.md): a day with at least PLD_DRIFT_MIN_CALLS calls whose label
# shares have a population stability index above the threshold against the gating evaluation's.
PLD_DRIFT_PSI_THRESHOLD = env_float("PLD_DRIFT_PSI_THRESHOLD", 0.2)
PLD_DRIFT_MIN_CALLS = env_int("PLD_DRIFT_MIN_CALLS", 30, minimum=1)
# Only the classify_api benchmark turns this on: then a request with ``X-PLD-Unlogged: 1`` skips the log, so
# one server can time calls with and without it, alternating.
PLD_BENCHMARK_UNLOGGED_CALLS = env_bool("PLD_BENCHMARK_UNLOGGED_CALLS", False)
if PLD_BENCHMARK_UNLOGGED_CALLS and not DEBUG:
    raise ImproperlyConfigured("PLD_BENCHMARK_UNLOGGED_CALLS is for the benchmark only; it needs DJANGO_DEBUG=1")

# Signed reports: a PKCS#12 identity; ``manage.py create_signing_identity`` makes a demo one.
PLD_SIGNING_P12 = env_str("PLD_SIGNING_P12", str(VAR_DIR / "signing" / "demo-identity.p12"))


# Its passphrase: the variable, else the one scripts/setup or create_signing_identity keeps under PLD_VAR_DIR.
PLD_SIGNING_PASSPHRASE = env_str("PLD_SIGNING_PASSPHRASE") or local_secrets.secret_read(
    VAR_DIR, local_secrets.SIGNING_PASSPHRASE
)
PLD_TSA_URL = env_str("PLD_TSA_URL")

# Where the demo's printed curl example points (scripts/demo sets it to its API process).
PLD_DEMO_BASE_URL = env_str("PLD_DEMO_BASE_URL", "http://127.0.0.1:8000")

PLD_DATASETS_DIR = Path(env_str("PLD_DATASETS_DIR", str(BASE_DIR.parent / "shared" / "datasets")))
