"""Plain-language tips: ``{% explain "key" "shown words" %}`` shows a term whose one-line meaning appears on
hover and on keyboard focus, and is read by screen readers through aria-describedby."""
from __future__ import annotations

import itertools

from django import template
from django.utils.html import format_html

from pldreview.glossary import GLOSSARY

register = template.Library()
_COUNTER = itertools.count(1)


@register.simple_tag
def explain(key: str, shown: str = "") -> str:
    """Render a focusable term with its plain explanation as a tooltip tied by aria-describedby."""
    term = GLOSSARY[key]
    # A process-wide counter: included templates (one per queue row) would restart a per-template one.
    tip_id = f"tip-{key}-{next(_COUNTER)}"
    return format_html(
        '<span class="term"><dfn tabindex="0" aria-describedby="{}">{}</dfn>'
        '<span class="tip" role="tooltip" id="{}">{}</span></span>',
        tip_id, shown or term.term, tip_id, term.plain,
    )
