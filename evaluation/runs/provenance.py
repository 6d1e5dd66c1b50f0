"""What the run page says about the rules text a pld run gave the student, compared with its prompt version's."""
from __future__ import annotations

import hashlib
from typing import Any

from evaluation.models import EvaluationRun


def run_prompt_provenance(run: EvaluationRun) -> dict[str, Any] | None:
    """Compare the rules text a pld run gave the student with its prompt version's text, plainly.

    A run hashes and counts exactly what the student read; ``pld_rules`` strips the version's final
    line break and adds the answer instruction when the text lacks a label. The page then shows
    both hashes and token counts and says what differs, instead of two unexplained numbers.
    """
    version = run.prompt_version
    if version is None:
        return None
    run_sha = run.prompt_sha256 or hashlib.sha256(run.prompt_text.encode("utf-8")).hexdigest()
    same = run_sha == version.sha256
    if same:
        difference = "The run read the version's text exactly: same SHA-256 and the same text."
    elif run.prompt_text == version.text.strip():
        difference = (
            "The run read the version's text without its leading and trailing whitespace (the final line "
            "break): the template wrapper of pld runs strips it, so the hash and token count differ from the "
            "version's while every rule is the same."
        )
    elif run.prompt_text.startswith(version.text.strip()):
        extra = run.prompt_text[len(version.text.strip()):].strip()
        difference = (
            f"The run read the version's text followed by a line the template wrapper adds: “{extra}”, so "
            "the hash and token count differ from the version's."
        )
    else:
        difference = (
            "The run's rules text is not the version's text: the version was compiled again under the same "
            "number or the run was started from another text. Compare the two below."
        )
    return {
        "same": same,
        "difference": difference,
        "version_sha256": version.sha256,
        "version_tokens": version.token_count,
        "run_sha256": run_sha,
        "run_tokens": run.prompt_tokens,
    }
