from __future__ import annotations

from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    verbose_name = "Evaluation"

    def ready(self) -> None:
        # rules never imports evaluation, so evaluation adds its figures to the rule pages from here.
        from django.conf import settings

        import evaluation.jobs  # noqa: F401 - registers every job handler of the app
        from evaluation import panels
        from evaluation.production.serving_stops import serving_stop_banners
        from evaluation.release.trends import trend_panel
        from evaluation.runs.rule_stats import register
        from rules.panels import register_task_banner, register_task_panel

        register()
        panels.register()
        register_task_panel(trend_panel)
        register_task_banner(serving_stop_banners)
        # pldreview never imports evaluation: the ledger's checkpoints are signed with the reports' identity here.
        from evaluation.release.ledger_checkpoints import (
            ledger_checkpoint_parse,
            ledger_checkpoint_sign,
            report_signed_heads,
        )
        from pldreview.checkpoints import register_checkpoint_service

        register_checkpoint_service(create=ledger_checkpoint_sign, read=ledger_checkpoint_parse,
                                    signed_heads=report_signed_heads)
        # A leaver's tokens are revoked in the same transaction as their deactivation (pldreview.accounts).
        from evaluation.production.api_tokens import _revoke_on_offboard
        from pldreview.accounts.services import user_offboarded

        user_offboarded.connect(_revoke_on_offboard, dispatch_uid="pld-revoke-tokens-on-offboard")
        # Only the processes that serve decisions ask for this (scripts/demo sets it for the API's process and
        # the job worker): tests and other management commands never load the model at start, nor does a
        # page-serving process (PLD_WEB_ROLE=pages) or one whose student is an inference server.
        decides_here = settings.PLD_WEB_ROLE != "pages" and settings.PLD_STUDENT_BACKEND == "llama_cpp"
        if settings.PLD_STUDENT_PRELOAD and decides_here:
            from evaluation.production.admission import student_preload_in_background

            student_preload_in_background()
