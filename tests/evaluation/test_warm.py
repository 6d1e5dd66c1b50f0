"""Warm starts and reproducible scores: a restored rules prefix scores exactly like a recomputed one."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from evaluation.student.in_process import Student, check_model_file
from evaluation.student.warm import state_path, student_state_restore, student_state_save
from rules.student_model import bundled_model_path
from tests.support.factories import NDA_ROWS

LABELS = ["Entailment", "Contradiction", "NotMentioned"]
EXAMPLE = f"Premise: {NDA_ROWS[0][0]}\nHypothesis: {NDA_ROWS[0][1]}"
SHORT_RULES = "Decide whether the clause entails, contradicts or does not mention the hypothesis."


def _max_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[name] - b[name]) for name in a)


def _rules_of(student: Student, n_tokens: int) -> str:
    """Return rule lines cut at about n_tokens tokens (each shorter text is a prefix of a longer one)."""
    lines = [SHORT_RULES]
    i = 0
    while student.count_tokens("\n".join(lines)) < n_tokens:
        i += 1
        lines.append(
            f"{i}. If the clause addresses topic {i} and the hypothesis restates its obligation in other words, "
            f"the label is {LABELS[i % 3]}."
        )
    text = "\n".join(lines)
    tokens = student.tokenize(text)[:n_tokens]
    return student.detokenize(tokens)


@pytest.fixture(scope="session")
def long_student() -> Student:
    # Room for a 4,600-token rule prefix; the session's other student keeps its small context.
    student = Student(check_model_file(bundled_model_path()), n_ctx=5120)
    yield student
    student.close()


@pytest.mark.slow
def test_a_restored_prefix_gives_the_recomputed_probabilities_at_every_length(long_student: Student) -> None:
    # 4,090 and 4,100 tokens are where a sequence-only restore (llama_state_seq_*) scored
    # differently on this model (docs/student.md); each prefix extends the previous one, so the
    # 4,600 tokens are computed once.
    student = long_student
    longest = _rules_of(student, 4600)
    for n_tokens in (300, 4090, 4100, 4600):
        rules = student.detokenize(student.rules_prefix(longest)[1 : n_tokens + 1])
        state = student.save_prefix_state(rules)
        recomputed = student.classify(rules=rules, example=EXAMPLE, labels=LABELS)
        assert recomputed.prefix == "recomputed"
        student.restore_prefix_state(rules, state)
        restored = student.classify(rules=rules, example=EXAMPLE, labels=LABELS)
        assert restored.prefix == "restored"
        assert restored.tokens_processed == recomputed.tokens_processed  # the prefix was not decoded again
        assert _max_diff(restored.probabilities, recomputed.probabilities) <= 1e-6, n_tokens
        assert _max_diff(restored.logprobs, recomputed.logprobs) <= 1e-6, n_tokens
    # And against a decision that processes the whole 4,600-token prompt from scratch in one pass.
    scratch = student.classify(rules=rules, example=EXAMPLE, labels=LABELS, reuse_prefix=False)
    assert scratch.prefix == "recomputed"
    assert _max_diff(scratch.probabilities, restored.probabilities) <= 1e-6


@pytest.mark.slow
def test_the_same_example_scores_identically_alone_after_others_and_in_smaller_batches(student: Student) -> None:
    rules = SHORT_RULES + "\n1. If the clause forbids what the hypothesis allows, the label is Contradiction."
    alone = student.classify(rules=rules, example=EXAMPLE, labels=LABELS, reuse_prefix=False)
    for premise, hypothesis, _ in NDA_ROWS[1:]:
        student.classify(rules=rules, example=f"Premise: {premise}\nHypothesis: {hypothesis}", labels=LABELS)
    after_others = student.classify(rules=rules, example=EXAMPLE, labels=LABELS)
    assert after_others.tokens_processed < alone.tokens_processed  # the rules came from the cache
    small = Student(student.info, n_ctx=student.n_ctx, n_batch=128)
    try:
        # A prompt longer than one 128-token batch, so it really is cut differently.
        long_rules = rules + "\n" + "\n".join(f"{i}. Clauses about topic {i} decide nothing." for i in range(40))
        in_128 = small.classify(rules=long_rules, example=EXAMPLE, labels=LABELS)
        in_512 = student.classify(rules=long_rules, example=EXAMPLE, labels=LABELS, reuse_prefix=False)
        assert in_512.prompt_tokens > 128
        assert _max_diff(in_128.probabilities, in_512.probabilities) <= 1e-6
    finally:
        small.close()
    assert _max_diff(after_others.probabilities, alone.probabilities) <= 1e-6


@pytest.mark.slow
def test_a_saved_state_is_restored_only_when_it_is_intact_and_its_key_matches(
    student: Student, settings, tmp_path: Path, caplog
) -> None:
    settings.PLD_STUDENT_STATE_DIR = tmp_path
    saved = student_state_save(student=student, rules_text=SHORT_RULES)
    assert saved.usable and saved.probe_max_diff <= 1e-6 and saved.path.exists()
    recomputed = student.classify(rules=SHORT_RULES, example=EXAMPLE, labels=LABELS, reuse_prefix=False)
    student.classify(rules="Other rules.", example=EXAMPLE, labels=LABELS)  # the cache no longer holds them

    assert student_state_restore(student=student, rules_text=SHORT_RULES)
    restored = student.classify(rules=SHORT_RULES, example=EXAMPLE, labels=LABELS)
    assert restored.prefix == "restored"
    assert _max_diff(restored.probabilities, recomputed.probabilities) <= 1e-6

    original = saved.path.read_bytes()
    header, _, payload = original.partition(b"\n")

    written = iter(range(1, 100))

    def refused(content: bytes, why: str) -> None:
        student.classify(rules="Other rules.", example=EXAMPLE, labels=LABELS)
        saved.path.write_bytes(content)
        moment = next(written) * 10**9  # a new file version, even within the file system's time resolution
        os.utime(saved.path, ns=(moment, moment))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="evaluation.student.warm"):
            assert not student_state_restore(student=student, rules_text=SHORT_RULES)
        assert why in caplog.text and "not used" in caplog.text
        decision = student.classify(rules=SHORT_RULES, example=EXAMPLE, labels=LABELS)
        assert decision.prefix == "recomputed"
        assert _max_diff(decision.probabilities, recomputed.probabilities) <= 1e-6

    flipped = bytearray(payload)
    flipped[len(flipped) // 2] ^= 0xFF
    refused(header + b"\n" + bytes(flipped), "does not match the SHA-256")
    refused(header + b"\n" + payload[: len(payload) // 2], "does not match the SHA-256")
    refused(b"\x00\x01 not a state", "not JSON")
    stale = {**json.loads(header), "llama_cpp_version": "0.0.1"}
    refused(json.dumps(stale).encode() + b"\n" + payload, "another llama_cpp_version")
    other_model = {**json.loads(header), "model_sha256": "0" * 64}
    refused(json.dumps(other_model).encode() + b"\n" + payload, "another model_sha256")
    # A state whose probe scored differently when it was saved is never restored.
    failed_probe = {**json.loads(header), "usable": False, "reason": "a probe example scored differently"}
    refused(json.dumps(failed_probe).encode() + b"\n" + payload, "refused when saved")
    assert saved.path == state_path(student=student, rules_text=SHORT_RULES)


@pytest.mark.slow
def test_warm_student_saves_the_production_versions_state_once(
    task, admin_user, second_admin, second_reviewer, student_settings, settings, tmp_path: Path, capsys
) -> None:
    import hashlib

    from django.core.management import call_command

    from evaluation.student.prompts import pld_rules
    from evaluation.student.warm import student_preload
    from tests.support.prompt_versions import approve_all, compiled, finished_run, promote_by_override

    settings.PLD_STUDENT_STATE_DIR = tmp_path
    call_command("warm_student")
    assert "nothing to save" in capsys.readouterr().out
    approve_all(task, second_reviewer)
    version = compiled(task, admin_user)
    finished_run(version, 0.7)
    promote_by_override(version, admin=admin_user, second_admin=second_admin)
    student_settings.classify(rules="Unrelated rules.", example="x", labels=["a", "b"])
    call_command("warm_student", "--task", task.name)
    assert f"{task.name} v1: saved" in capsys.readouterr().out
    (path,) = tmp_path.glob("*.state")
    header = json.loads(path.read_bytes().partition(b"\n")[0])
    rules = pld_rules(task=task, prompt_text=version.text)
    assert header["usable"] and header["prompt_sha256"] == hashlib.sha256(rules.encode()).hexdigest()
    assert header["model_sha256"] == student_settings.info.sha256
    assert student_preload() == [f"{task.name} v1: held ({path})"]
    student_settings.classify(rules="Unrelated rules.", example="x", labels=["a", "b"])
    assert student_preload() == [f"{task.name} v1: restored ({path})"]


@pytest.mark.slow
def test_a_run_records_whether_its_rules_prefix_was_restored_or_recomputed(
    task, nda_examples, student_settings, settings, tmp_path: Path
) -> None:
    from evaluation.runs.services import evaluation_run_create, evaluation_run_execute

    settings.PLD_STUDENT_STATE_DIR = tmp_path
    warm = evaluation_run_create(task=task, mode="zero-shot", limit=2)
    assert student_state_save(student=student_settings, rules_text=warm.prompt_text).usable
    student_settings.classify(rules="Unrelated rules.", example="x", labels=["a", "b"])
    warm = evaluation_run_execute(run=warm)
    assert warm.options["prefix"] == "restored"
    cold = evaluation_run_create(task=task, mode="few-shot", k_shot=1, limit=2)  # no state saved for these rules
    cold = evaluation_run_execute(run=cold)
    assert cold.options["prefix"] == "recomputed"
