"""Probe what changes the student's scores: how a saved prefix is restored, and the sliding-window cache.

Not a test: it prints one JSON line per case. Run from the project root (a few minutes at 4,600 tokens):

    .venv/bin/python benchmarks/student_exactness.py restore 4090 4100 4600
    .venv/bin/python benchmarks/student_exactness.py swa 4600

``restore`` decides one example after a prefix of N rule tokens three ways — the prefix processed in
the same pass, restored from ``llama_state_seq_get_data`` (one sequence) and restored from
``llama_state_get_data`` (the whole context) — and gives the largest difference of the example's
last-token logits and probabilities from the one-pass run, with where the restored
sliding-window cells landed. ``swa`` repeats the issue's probe: ``Llama(swa_full=…, n_ubatch=…)``,
``eval(prefix + example)``, softmax of the last row, against the full cache at n_ubatch 512.
"""
from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.student import load_examples, synthetic_rules  # noqa: E402
from evaluation.student.in_process import Student, check_model_file  # noqa: E402
from rules.student_model import bundled_model_path  # noqa: E402


def probabilities(row: np.ndarray) -> np.ndarray:
    values = np.exp(row.astype(np.float64) - row.max())
    return values / values.sum()


def differences(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {
        "logits_max_abs_diff": float(np.abs(a - b).max()),
        "probs_max_abs_diff": float(np.abs(probabilities(a) - probabilities(b)).max()),
    }


def restore_cases(lengths: list[int]) -> None:
    import llama_cpp as lc

    student = Student(check_model_file(bundled_model_path()), n_ctx=8192)
    rule_tokens = student.tokenize(synthetic_rules(student, max(lengths) + 100), add_bos=True)
    example = student.tokenize("\n\n" + load_examples(1)[0] + "\nAnswer:")
    ctx = student._ctx.ctx

    def after(prefix: list[int]) -> np.ndarray:
        student._cached = list(prefix)
        return student._extend(prefix + example, want_last=True)[1]

    def copy_out(size: int, read: object, *seq: int) -> tuple[object, int]:
        buffer = (ctypes.c_uint8 * size)()
        return buffer, read(ctx, buffer, size, *seq)

    for n in lengths:
        prefix = rule_tokens[:n]
        student._reset()
        one_pass = student._extend(prefix + example, want_last=True)[1]
        student._reset()
        student._extend(prefix, want_last=False)
        whole, n_whole = copy_out(lc.llama_state_get_size(ctx), lc.llama_state_get_data)
        seq, n_seq = copy_out(lc.llama_state_seq_get_size(ctx, 0), lc.llama_state_seq_get_data, 0)
        same_context = after(prefix)
        student._reset()
        lc.llama_state_seq_set_data(ctx, seq, n_seq, 0)
        for other in range(1, student._n_seq):
            lc.llama_memory_seq_cp(student._mem, 0, other, -1, -1)
        swa_kept = n - lc.llama_memory_seq_pos_min(student._mem, 0)
        from_seq = after(prefix)
        student._reset()
        lc.llama_state_set_data(ctx, whole, n_whole)
        from_whole = after(prefix)
        print(json.dumps({
            "case": "restore", "prefix_tokens": n, "example_tokens": len(example),
            "seq_state_mb": round(n_seq / 1e6, 1), "whole_state_mb": round(n_whole / 1e6, 1),
            "seq_state_sliding_window_cells_kept": swa_kept,
            "prefix_then_example": differences(same_context, one_pass),
            "seq_restore": differences(from_seq, one_pass),
            "whole_restore": differences(from_whole, one_pass),
        }), flush=True)
    student.close()


def swa_cases(lengths: list[int]) -> None:
    import llama_cpp

    path = str(bundled_model_path())
    tokenizer = llama_cpp.Llama(model_path=path, n_ctx=256, verbose=False)
    student_like = Student(check_model_file(path), n_ctx=256)
    rules = synthetic_rules(student_like, max(lengths) + 100)
    student_like.close()
    tokens = tokenizer.tokenize(rules.encode(), add_bos=True)
    example = tokenizer.tokenize(("\n\n" + load_examples(1)[0] + "\nAnswer:").encode(), add_bos=False)
    tokenizer.close()
    for n in lengths:
        rows = {}
        for swa_full, n_ubatch in ((True, 512), (True, 256), (False, 512), (False, 256), (False, 64)):
            llm = llama_cpp.Llama(model_path=path, n_ctx=8192, n_batch=512, n_ubatch=n_ubatch, swa_full=swa_full,
                                  n_threads=2, logits_all=False, verbose=False)
            llm.eval(tokens[:n] + example)
            last = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
            rows[(swa_full, n_ubatch)] = np.ctypeslib.as_array(last, shape=(llm.n_vocab(),)).copy()
            llm.close()
        reference = rows[(True, 512)]
        print(json.dumps({
            "case": "swa", "prefix_tokens": n, "example_tokens": len(example),
            **{f"swa_full={full} n_ubatch={ub}": differences(row, reference) for (full, ub), row in rows.items()},
            "small_cache_512_vs_256": differences(rows[(False, 512)], rows[(False, 256)]),
        }), flush=True)


if __name__ == "__main__":
    what, *numbers = sys.argv[1:] or ["restore"]
    lengths = [int(n) for n in numbers] or [300, 4090, 4100, 4600]
    {"restore": restore_cases, "swa": swa_cases}[what](lengths)
