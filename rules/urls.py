"""URLs of the rules app: every page of tasks, review, prompt versions and the teacher, in one list."""
from __future__ import annotations

from django.urls import path

from rules.views import dashboard, prompts, review, tasks, teacher

urlpatterns = [
    # The overview page.
    path("", dashboard.home, name="pld-home"),
    # Tasks and datasets.
    path("tasks/", tasks.task_list, name="pld-task-list"),
    path("tasks/<slug:task_name>/", tasks.task_detail, name="pld-task-detail"),
    path("tasks/<slug:task_name>/members/", tasks.task_members, name="pld-task-members"),
    path("users/<int:user_id>/tasks/", tasks.user_tasks, name="pld-user-tasks"),
    path("examples/<int:example_id>/", tasks.example_detail, name="pld-example-detail"),
    path("datasets/import/", tasks.import_dataset, name="pld-dataset-import"),
    # The review workspace, rule sets and the review log.
    path("review/", review.review_queue_page, name="pld-review-queue"),
    path("review/waiting/", review.waiting_for_me, name="pld-waiting-for-me"),
    path("review/waiting/badge/", review.waiting_badge, name="pld-waiting-badge"),
    path("rules/new/", review.rule_create, name="pld-rule-create"),
    path("rules/<int:rule_id>/", review.rule_detail, name="pld-rule-detail"),
    path("rules/<int:rule_id>/approve/", review.decide_rule, {"kind": "approve"}, name="pld-rule-approve"),
    path("rules/<int:rule_id>/edit/", review.decide_rule, {"kind": "edit"}, name="pld-rule-edit"),
    path("rules/<int:rule_id>/reject/", review.decide_rule, {"kind": "reject"}, name="pld-rule-reject"),
    path("rules/<int:rule_id>/history/", review.rule_history, name="pld-rule-history"),
    path("rules/<int:rule_id>/comments/", review.add_comment, name="pld-rule-comment"),
    path("decisions/<int:decision_id>/undo/", review.undo_decision, name="pld-decision-undo"),
    path("tasks/<slug:task_name>/ruleset/", review.ruleset_page, name="pld-ruleset"),
    path("tasks/<slug:task_name>/ruleset/reorder/", review.reorder_ruleset, name="pld-ruleset-reorder"),
    path("ruleset-proposals/<int:rule_set_reorder_proposal_id>/approve/", review.decide_reorder_proposal,
         {"kind": "approve"}, name="pld-ruleset-proposal-approve"),
    path("ruleset-proposals/<int:rule_set_reorder_proposal_id>/reject/", review.decide_reorder_proposal,
         {"kind": "reject"}, name="pld-ruleset-proposal-reject"),
    path("tasks/<slug:task_name>/review-log/", review.review_log_page, name="pld-review-log"),
    path("tasks/<slug:task_name>/review-log.<str:fmt>", review.export_review_log, name="pld-review-log-export"),
    # The review log's old addresses and names (it was the "decision log" until issue 26): permanent redirects.
    path("tasks/<slug:task_name>/decisions/", review.review_log_page_moved, name="pld-decision-log-page"),
    path("tasks/<slug:task_name>/decision-log.<str:fmt>", review.export_review_log_moved, name="pld-decision-log"),
    # Prompt versions.
    path("prompts/", prompts.prompt_version_list, name="pld-prompt-version-list"),
    path("prompts/compare/", prompts.prompt_version_compare, name="pld-prompt-version-compare"),
    path("prompts/<int:version_id>/", prompts.prompt_version_detail, name="pld-prompt-version-detail"),
    path("tasks/<slug:task_name>/compile-prompt/", prompts.compile_prompt, name="pld-prompt-compile"),
    # The teacher: extraction, clustering, micro-rules and its call log.
    path("tasks/<slug:task_name>/teacher/", teacher.teacher_task, name="pld-teacher-task"),
    path("tasks/<slug:task_name>/teacher/extract/", teacher.start_extraction, name="pld-teacher-extract"),
    path("tasks/<slug:task_name>/teacher/cluster/", teacher.start_clustering, name="pld-teacher-cluster"),
    path("tasks/<slug:task_name>/micro-rules/", teacher.micro_rule_list, name="pld-teacher-micro-rules"),
    path("micro-rules/<int:micro_rule_id>/promote/", teacher.promote_micro_rule, name="pld-teacher-promote"),
    path("teacher/calls/", teacher.teacher_call_list, name="pld-teacher-calls"),
    path("teacher/calls/<int:call_id>/", teacher.teacher_call_detail, name="pld-teacher-call-detail"),
]
