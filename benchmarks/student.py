"""Benchmark the student: prefix reuse, rule-prompt overhead, chain-of-thought cost, ContractNLI documents.

A benchmark, not a test: it prints one JSON object (the last line) with the figures the student
issue asks for. Run it from the project root on a quiet machine:

    .venv/bin/python benchmarks/student.py [--examples 30] [--threads 2] [--flash-attn] [--no-peer]

The modes it compares (zero-shot, PLD rules, PLD without prefix reuse, chain-of-thought) are interleaved
example by example, each on its own student (its own llama.cpp context, so each keeps its rules prefix), so a
burst of load on a shared machine falls on every mode alike and each ratio comes from the same moments.
Besides the runner it measures the peer a user would pick instead — llama-cpp-python's OpenAI-compatible server
with the same GGUF, one completion request per example, the rules as the prompt's prefix — interleaved the same
way, and the first decision of a fresh process without (``cold_first_ms``) and with (``warm_first_ms``) the
saved rules-prefix state. The peer is started as ``python -m rules.llama_server`` (``llama_cpp.server`` loading
the model without extra buffer types, rules/llama_loading.py): the stock ``python -m llama_cpp.server`` died with
SIGSEGV at its first completion on this workplace's AMX-capable Xeon. Its server code, options and sampling are
llama_cpp.server's own; only the weights are not repacked (``peer_loader`` in the output says so).

Example texts come from fixtures/nda_demo.jsonl; the ~4,600-token rule prompt is synthetic (only
its length matters for timing); ContractNLI documents are read from ../shared/datasets when present
and skipped otherwise. The load average before and after is part of the output: on a shared
machine the timings are only as good as the quiet they were taken in.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Saved states go to a scratch directory, never to the app's var/ (set before the settings load).
os.environ.setdefault("PLD_STUDENT_STATE_DIR", tempfile.mkdtemp(prefix="pld-bench-states-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pldreview.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "benchmark-only-never-serves-requests-" + "x" * 30)
import django  # noqa: E402

django.setup()

from evaluation.student.in_process import (  # noqa: E402
    COT_MAX_TOKENS,
    ExampleTooLongError,
    Student,
    check_model_file,
)
from evaluation.student.warm import student_state_restore, student_state_save  # noqa: E402
from rules.student_model import bundled_model_path  # noqa: E402
from rules.teacher.local import free_port, is_answering  # noqa: E402

LABELS = ["Entailment", "Contradiction", "NotMentioned"]
ZERO_SHOT_RULES = (
    "Task: Read one clause of a non-disclosure agreement and decide whether it says the hypothesis holds, "
    "says the opposite, or says nothing about it.\nLabels:\n- Entailment: the clause says the hypothesis holds.\n"
    "- Contradiction: the clause says the opposite.\n- NotMentioned: the clause says nothing about it.\n"
    "Answer with exactly one label: Entailment, Contradiction, NotMentioned."
)
TOPICS = [
    "disclosure to employees", "disclosure to advisers", "return or destruction of information",
    "retention of archival copies", "reverse engineering", "notice of compelled disclosure",
    "survival after termination", "ownership of information", "independent development",
    "information already public", "permitted purpose", "no licence granted", "remedies and injunctions",
    "sharing with affiliates", "verbal disclosures", "solicitation of employees", "governing law",
]


def synthetic_rules(student: Student, target_tokens: int) -> str:
    """Return rule text of about target_tokens tokens, in the shape of a compiled PLD prompt."""
    lines = [ZERO_SHOT_RULES, "", "Rules (apply the first that matches):"]
    i = 0
    while student.count_tokens("\n".join(lines)) < target_tokens:
        topic = TOPICS[i % len(TOPICS)]
        label = LABELS[i % 3]
        lines.append(
            f"{i + 1}. [{topic}] If the clause explicitly addresses {topic} and the hypothesis restates the "
            f"clause's obligation in different words, or the clause's wording about {topic} makes the hypothesis "
            f"true, false or leaves it open in the way described in precedent case {i + 1}, the label is {label}; "
            f"ignore headings, definitions and boilerplate that do not settle {topic}."
        )
        i += 1
    return "\n".join(lines)


def load_examples(limit: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "fixtures" / "nda_demo.jsonl").read_text().splitlines() if line]
    return [f"Premise: {r['premise']}\nHypothesis: {r['hypothesis']}" for r in rows[:limit]]


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 1) if values else 0.0


def raw_prefill(student: Student, repeats: int = 3) -> float:
    """Return llama.cpp's own prompt-processing rate: 512 tokens in one batch from an empty cache."""
    text = " ".join(TOPICS) * 40
    tokens = student.tokenize(text, add_bos=True)[:512]
    rates = []
    for _ in range(repeats):
        student._reset()
        started = time.perf_counter()
        student._extend(tokens, want_last=True)
        rates.append(len(tokens) / (time.perf_counter() - started))
    student._reset()
    return round(max(rates), 1)


def fastest_batch_s(student: Student, head: list[int], tail: list[int], repeats: int) -> float:
    """Return the fastest of ``repeats`` timings of llama.cpp processing ``tail`` after a cached ``head``.

    The fastest run is the one least disturbed by other processes on a shared machine.
    """
    student._reset()
    student._extend(head, want_last=False)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        student._extend(head + tail, want_last=True)
        times.append(time.perf_counter() - started)
        student._extend(head, want_last=False)
    student._reset()
    return min(times)


def raw_prefill_at_depth(student: Student, prefix: str, repeats: int = 3) -> float:
    """Return llama.cpp's rate for a 512-token batch appended after the rules (attention included)."""
    tail = student.tokenize(" ".join(TOPICS) * 40)[:512]
    seconds = fastest_batch_s(student, student.tokenize(prefix, add_bos=True), tail, repeats)
    return round(len(tail) / seconds, 1)


def llama_cpp_example_cost(
    student: Student, bare: Student, prefix: str, n_tokens: int, repeats: int = 7
) -> dict[str, float]:
    """Time llama.cpp alone on an example-sized batch, on an empty cache and after the rules.

    No labels, no Python around it: the ratio of the two is the overhead llama.cpp itself
    charges for attending over the rules, the floor for ``overhead_ratio`` with this model.
    The two sides alternate repeat by repeat, each on its own student holding its own head (``bare`` only the
    BOS token, ``student`` the rules), and each keeps its fastest: the one least disturbed by other processes.
    """
    tail = student.tokenize(" ".join(TOPICS) * 10)[:n_tokens]
    sides = [(bare, [bare.llm.token_bos()]), (student, student.tokenize(prefix, add_bos=True))]
    for side, head in sides:
        side._reset()
        side._extend(head, want_last=False)
    times: list[list[float]] = [[], []]
    for _ in range(repeats):
        for k, (side, head) in enumerate(sides):
            started = time.perf_counter()
            side._extend(head + tail, want_last=True)
            times[k].append(time.perf_counter() - started)
            side._extend(head, want_last=False)
    for side, _head in sides:
        side._reset()
    empty, after_rules = min(times[0]) * 1000.0, min(times[1]) * 1000.0
    return {
        "llama_cpp_example_ms_empty": round(empty, 1),
        "llama_cpp_example_ms_after_rules": round(after_rules, 1),
        "llama_cpp_overhead_ratio": round(after_rules / empty, 3),
    }


COT_RULES = ZERO_SHOT_RULES + "\nFirst explain your reasoning briefly, then give the label."


def interleaved_modes(students: dict[str, Student], pld_rules: str, examples: list[str],
                      args: argparse.Namespace) -> dict[str, list]:
    """Decide every example in each mode, the modes taking turns example by example; return each mode's decisions.

    Every mode has its own student, so each keeps its own rules prefix between its examples; the order of the modes
    rotates from one example to the next. A mode's first decision processes its rules prefix (timed apart).
    ``no_reuse`` decides examples 1..n (the same ones as ``pld``'s after its first) and ``cot`` examples 0..n.
    """
    calls = {
        "zero": lambda text: students["zero"].classify(rules=ZERO_SHOT_RULES, example=text, labels=LABELS),
        "pld": lambda text: students["pld"].classify(rules=pld_rules, example=text, labels=LABELS),
        "no_reuse": lambda text: students["no_reuse"].classify(
            rules=pld_rules, example=text, labels=LABELS, reuse_prefix=False),
        "cot": lambda text: students["cot"].classify(
            rules=COT_RULES, example=text, labels=LABELS, reasoning_cue="Reasoning:",
            max_reasoning_tokens=args.cot_tokens),
    }
    decided: dict[str, list] = {name: [] for name in calls}
    for i, text in enumerate(examples):
        due = ["zero", "pld"]
        if 1 <= i <= args.no_reuse_examples:
            due.append("no_reuse")
        if i <= args.cot_examples:
            due.append("cot")
        for name in due[i % len(due):] + due[: i % len(due)]:
            decided[name].append(calls[name](text))
    return decided


def contractnli(student: Student, rules: str, n_docs: int) -> dict[str, object]:
    path = ROOT.parent / "shared" / "datasets" / "contractnli" / "test.json"
    if not path.exists():
        return {"contractnli": f"skipped: {path} is absent"}
    data = json.loads(path.read_text())
    hypotheses = {key: value["hypothesis"] for key, value in data["labels"].items()}
    docs = sorted(data["documents"], key=lambda d: str(d["id"]))[:n_docs]
    # The run service orders examples by (group_key, id): every hypothesis of a document together.
    plan = [
        (str(doc["id"]), doc["text"], hypotheses[key])
        for doc in docs
        for key in sorted(doc["annotation_sets"][0]["annotations"])
    ]
    processed_docs = 0
    latencies = []
    refused = 0
    student._reset()
    for _doc_id, text, hypothesis in plan:
        context = f"Document:\n{text}"
        context_tokens = student.count_tokens(context)
        example = f"Hypothesis: {hypothesis}"
        try:
            decision = student.classify(rules=rules, context=context, example=example, labels=LABELS)
        except ExampleTooLongError:  # counted, as a run records it; the benchmark goes on
            refused += 1
            continue
        latencies.append(decision.latency_ms)
        if decision.tokens_processed >= context_tokens:
            processed_docs += 1
    return {
        "contractnli_docs": len(docs),
        "contractnli_examples": len(plan),
        "contractnli_docs_processed_per_run": processed_docs,
        "contractnli_refused": refused,
        "contractnli_ms_p50": p50(latencies),
        "contractnli_ms_mean": round(statistics.mean(latencies), 1) if latencies else 0.0,
    }


def progress(step: str, result: dict[str, object]) -> None:
    """Print the figures so far to stderr: on a busy machine a long run still leaves what it measured."""
    print(f"{time.strftime('%H:%M:%S')} {step}: {json.dumps(result)}", file=sys.stderr, flush=True)


def first_decision(*, rules_tokens: int, n_ctx: int, threads: int, warm: bool) -> dict[str, float]:
    """Time the first decision of this (fresh) process, after restoring the saved state when ``warm``."""
    info = check_model_file(bundled_model_path())
    student = Student(info, n_ctx=n_ctx, n_threads=threads)
    rules = synthetic_rules(student, rules_tokens)
    example = load_examples(1)[0]
    started = time.perf_counter()
    restored = student_state_restore(student=student, rules_text=rules) if warm else False
    decision = student.classify(rules=rules, example=example, labels=LABELS)
    first_ms = (time.perf_counter() - started) * 1000.0
    student.close()
    return {"first_ms": round(first_ms, 1), "restored": restored, "prefix": decision.prefix,
            "probabilities": decision.probabilities}


def fresh_process_first_ms(args: argparse.Namespace, *, warm: bool) -> dict[str, object]:
    """Run first_decision in a new Python process (a restarted web app or worker) and return its figures."""
    command = [
        sys.executable, __file__, "--first-decision", "warm" if warm else "cold",
        "--rule-tokens", str(args.rule_tokens), "--n-ctx", str(args.n_ctx), "--threads", str(args.threads),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(output.strip().splitlines()[-1])


class Peer:
    """llama_cpp.server (``python -m rules.llama_server``: loaded without extra buffer types) on a loopback port."""

    def __init__(self, model_path: str, *, n_ctx: int, threads: int) -> None:
        self.base_url = f"http://127.0.0.1:{free_port()}/v1"
        port = self.base_url.rsplit(":", 1)[1].split("/")[0]
        self.log = tempfile.NamedTemporaryFile(prefix="pld-bench-peer-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "CONFIG_FILE")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rules.llama_server", "--model", model_path, "--host", "127.0.0.1", "--port", port,
             "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads),
             "--verbose", "False"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,  # rules.llama_server is this project's
        )
        deadline = time.monotonic() + 180
        while not is_answering(self.base_url, timeout=1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rules.llama_server (llama_cpp.server) did not come up; see {self.log.name}")
            time.sleep(0.3)

    def complete(self, prompt: str) -> tuple[str, float]:
        """Send one completion request (greedy, a few tokens); return its text and milliseconds."""
        body = json.dumps({"prompt": prompt, "max_tokens": 6, "temperature": 0.0}).encode()
        request = urllib.request.Request(
            self.base_url + "/completions", data=body, headers={"Content-Type": "application/json"}
        )
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            text = json.loads(response.read())["choices"][0]["text"]
        return text, (time.perf_counter() - started) * 1000.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def valid_label(text: str) -> bool:
    """Say whether a completion names exactly one label as its first word (what a user would parse)."""
    words = text.strip().split()
    return bool(words) and words[0].strip(".,;:") in LABELS


def interleaved_with_peer(student: Student, rules: str, examples: list[str], args: argparse.Namespace) -> dict:
    """Decide each example with the runner, then send it to the peer, alternating; return both sides' figures."""
    peer = Peer(student.info.path, n_ctx=args.n_ctx, threads=args.threads)
    try:
        # The runner already holds the rules (its first-call cost is cold_first_ms / warm_first_ms);
        # the peer's first request pays for them (peer_first_ms).
        ours, theirs, valid = [], [], 0
        for text in examples:
            ours.append(student.classify(rules=rules, example=text, labels=LABELS).latency_ms)
            completion, ms = peer.complete(f"{rules}\n\n{text}\nAnswer:")
            theirs.append(ms)
            valid += valid_label(completion)
    finally:
        peer.stop()
    return {
        "peer_first_ms": round(theirs[0], 1),
        "peer_server_ms_p50": p50(theirs[1:]),
        "peer_runner_ms_p50": p50(ours[1:]),
        "peer_over_ours": round(p50(theirs[1:]) / p50(ours[1:]), 2),
        "peer_valid_label_share": round(valid / len(examples), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=30)
    parser.add_argument("--no-reuse-examples", type=int, default=3)
    parser.add_argument("--cot-examples", type=int, default=8)
    parser.add_argument("--cot-tokens", type=int, default=COT_MAX_TOKENS, help="reasoning budget of a cot decision")
    parser.add_argument("--rule-tokens", type=int, default=4600)
    parser.add_argument("--contractnli-docs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=16384)
    parser.add_argument("--flash-attn", action="store_true")
    parser.add_argument("--no-peer", action="store_true", help="skip the llama_cpp.server comparison")
    parser.add_argument(
        "--new-only", action="store_true", help="only the warm start and the peer (when cores are too busy for all)"
    )
    parser.add_argument("--first-decision", choices=["cold", "warm"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_decision:
        print(json.dumps(first_decision(
            rules_tokens=args.rule_tokens, n_ctx=args.n_ctx, threads=args.threads, warm=args.first_decision == "warm"
        )))
        return

    load_before = os.getloadavg()
    info = check_model_file(bundled_model_path())
    started = time.perf_counter()
    student = Student(info, n_ctx=args.n_ctx, n_threads=args.threads, flash_attn=args.flash_attn)
    load_s = time.perf_counter() - started
    examples = load_examples(args.examples + 1)
    pld_rules = synthetic_rules(student, args.rule_tokens)

    result: dict[str, object] = {"model": info.name, "quantization": info.quantization, "threads": args.threads}
    if not args.new_only:
        result["raw_prefill_tok_s"] = raw_prefill(student)
        result["raw_prefill_after_rules_tok_s"] = raw_prefill_at_depth(student, pld_rules)
        progress("prefill", result)

        others = {name: Student(info, n_ctx=args.n_ctx, n_threads=args.threads, flash_attn=args.flash_attn)
                  for name in ("zero", "no_reuse", "cot")}
        decided = interleaved_modes({"pld": student, **others}, pld_rules, examples, args)
        zero, pld, no_reuse, cot = (decided[name] for name in ("zero", "pld", "no_reuse", "cot"))
        zero_ms = [d.latency_ms for d in zero[1:]]
        pld_ms = [d.latency_ms for d in pld[1:]]
        pld_tokens = sum(d.tokens_processed for d in pld[1:])
        result.update(
            rule_prompt_tokens=student.count_tokens(pld_rules),
            n_examples=len(pld_ms),
            zero_shot_ms_p50=p50(zero_ms),
            pld_ms_p50=p50(pld_ms),
            pld_ms_p95=round(sorted(pld_ms)[int(0.95 * (len(pld_ms) - 1))], 1),
            pld_prefix_ms=round(pld[0].latency_ms, 1),
            overhead_ratio=round(p50(pld_ms) / p50(zero_ms), 3),
            no_reuse_ms_p50=p50([d.latency_ms for d in no_reuse]),
            cot_ms_p50=p50([d.latency_ms for d in cot[1:]]),
            cot_max_tokens=args.cot_tokens,
            cot_tokens_processed_mean=round(statistics.mean(d.tokens_processed for d in cot[1:]), 1),
            cot_reasoning_tokens_mean=round(statistics.mean(student.count_tokens(d.output_text) for d in cot[1:]), 1),
            example_tokens_processed_mean=round(pld_tokens / len(pld_ms), 1),
            same_labels_with_and_without_reuse=all(
                a.label == b.label for a, b in zip(pld[1 : 1 + len(no_reuse)], no_reuse, strict=True)
            ),
        )
        result["cot_over_pld"] = round(result["cot_ms_p50"] / result["pld_ms_p50"], 1)
        result["no_reuse_over_pld"] = round(result["no_reuse_ms_p50"] / result["pld_ms_p50"], 1)
        progress("modes", result)
        result.update(llama_cpp_example_cost(student, others["zero"], pld_rules,
                                             round(result["example_tokens_processed_mean"])))
        for other in others.values():
            other.close()
        result["overhead_over_llama_cpp"] = round(result["overhead_ratio"] / result["llama_cpp_overhead_ratio"], 3)

    progress("llama.cpp floor", result)
    saved = student_state_save(student=student, rules_text=pld_rules)
    result.update(state_mb=round(saved.size / 1e6, 1), state_usable=saved.usable,
                  state_probe_max_diff=saved.probe_max_diff)
    cold = fresh_process_first_ms(args, warm=False)
    warm = fresh_process_first_ms(args, warm=True)
    result.update(
        cold_first_ms=cold["first_ms"],
        warm_first_ms=warm["first_ms"],
        warm_restored=warm["restored"],
        warm_over_cold=round(warm["first_ms"] / cold["first_ms"], 3),
        warm_same_probabilities=max(
            abs(warm["probabilities"][k] - cold["probabilities"][k]) for k in LABELS
        ) <= 1e-6,
    )
    progress("warm start", result)
    if not args.no_peer:
        result.update(interleaved_with_peer(student, pld_rules, examples, args))
        result["peer_loader"] = "rules.llama_server (llama_cpp.server without extra buffer types)"
        progress("peer", result)
    if not args.new_only:
        result.update(contractnli(student, ZERO_SHOT_RULES, args.contractnli_docs))
    result["model_load_s"] = round(load_s, 2)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    student.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
