"""Logged production decisions written the way the classify API writes them, without loading the student."""
from __future__ import annotations

import uuid

from evaluation.models import ApiToken, ClassifyCall
from evaluation.production.decision_log import classify_call_record
from evaluation.production.serving import Classification
from rules.models import PromptVersion

INPUTS = {"premise": "The Recipient may keep one archival copy.", "hypothesis": "The party must destroy all copies."}


def logged_call(version: PromptVersion, *, token: ApiToken | None = None, label: str = "Entailment",
                inputs: dict[str, str] | None = None) -> ClassifyCall:
    """Record one decision of the version through the decision log's own service (ledger entry included).

    The Classification is what the serving code hands the log after the student decided; building it here keeps
    these tests free of the model while the record, its ledger entry and its retention are the real ones.
    """
    probabilities = {name: (0.7 if name == label else 0.15) for name in version.task.label_names}
    result = Classification(
        label=label, probabilities=probabilities, prompt_version_id=version.pk,
        prompt_version_number=version.number, prompt_version_sha256=version.sha256, model_sha256="m" * 64,
        latency_ms=12.0,
    )
    return classify_call_record(
        task=version.task, result=result, inputs=dict(inputs or INPUTS), source=ClassifyCall.Source.API,
        request_id=uuid.uuid4(), latency_ms=12.0, api_token=token,
    )
