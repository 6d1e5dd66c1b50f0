"""One date format everywhere (issue 14): ISO date, 24-hour time and the zone, e.g. "2026-11-29 22:46 UTC".

Django localises dates with the locale's formats, which win over the DATETIME_FORMAT setting; this module
replaces the English ones ("Nov. 29, 2026, 10:46 p.m.").
"""
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i"
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
