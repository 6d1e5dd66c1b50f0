"""The demo story that ``manage.py seed_demo`` tells, one module per chapter, in story order (see ``story.py``).

It lives in ``evaluation`` because the story crosses every app: it may import ``pldreview``, ``rules`` and
``evaluation``, and nothing outside this package imports it except the two demo commands (and tests).
"""
