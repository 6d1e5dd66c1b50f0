"""Parse dataset files into plain examples, one parser per format; nothing here touches the database.

Each parser reads the whole text of one file and returns a ``ParsedFile``: the examples in file
order and, for the known public formats, the task definition they belong to. Anything wrong with
the file raises ``ImportRefused`` naming the file, the line or record, and the problem, so the
caller can refuse the file as a whole.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from rules.models import Example

FORMATS = ("jsonl", "csv", "contractnli", "stereoset", "logiqa2")
# The formats whose task definition (labels, input fields) the format itself fixes.
KNOWN_FORMATS = ("contractnli", "stereoset", "logiqa2")
DEFAULT_LABEL_FIELD = "label"


class ImportRefused(ValidationError):
    """A dataset file that cannot be imported; the message names the file, the record and the problem."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source, self.where, self.problem = source, where, problem
        location = f"{source}, {where}" if where else source
        super().__init__(f"{location}: {problem}")


@dataclass(frozen=True)
class TaskSpec:
    """The task a known format describes: labels with descriptions and the input fields."""

    title: str
    description: str
    labels: list[dict[str, str]]
    input_fields: list[str]
    shared_context_field: str = ""

    @property
    def label_names(self) -> list[str]:
        return [label["name"] for label in self.labels]


@dataclass(frozen=True)
class ParsedExample:
    """One labelled example read from a file, before it becomes an ``Example`` row."""

    inputs: dict[str, str]
    label: str
    source_ref: str
    group_key: str = ""
    evidence: list[dict[str, int]] = field(default_factory=list)
    # Set when the dataset legitimately repeats the same content as distinct items (StereoSet
    # items sharing a context, LogiQA questions under two ids); it then takes part in the hash.
    identity: str = ""

    @property
    def content_hash(self) -> str:
        """Return the hash that makes a re-import of the same record add nothing."""
        digest = Example.hash_content(self.inputs, self.label)
        if not self.identity:
            return digest
        return hashlib.sha256(f"{digest}\n{self.identity}".encode()).hexdigest()


@dataclass
class ParsedFile:
    """The examples of one file in file order, and the task definition when the format fixes it."""

    examples: list[ParsedExample]
    task_spec: TaskSpec | None = None


@dataclass(frozen=True)
class FieldMap:
    """How the columns of a jsonl or csv file map onto a task: task field → column, and the label column."""

    fields: dict[str, str] = field(default_factory=dict)
    label: str = DEFAULT_LABEL_FIELD
    id: str = ""
    group: str = ""

    @classmethod
    def parse(cls, pairs: list[str] | str | None, **kwargs: str) -> FieldMap:
        """Build a map from ``task_field=column`` pairs (a list, or text with one pair a line or comma)."""
        if isinstance(pairs, str):
            pairs = [p for chunk in pairs.splitlines() for p in chunk.split(",")]
        fields: dict[str, str] = {}
        for pair in pairs or []:
            pair = pair.strip()
            if not pair:
                continue
            name, sep, column = pair.partition("=")
            name, column = name.strip(), column.strip()
            if not sep or not name or not column:
                raise ValidationError(f"Field mapping {pair!r} must look like task_field=column")
            if name in fields:
                raise ValidationError(f"Field mapping names the task field {name!r} twice")
            fields[name] = column
        return cls(fields=fields, **{k: v.strip() for k, v in kwargs.items() if v and v.strip()})


# --- known task definitions ------------------------------------------------------------------

CONTRACTNLI_SPEC = TaskSpec(
    title="ContractNLI",
    description=(
        "Read a non-disclosure agreement and decide, for one hypothesis about it, whether the contract "
        "says the hypothesis holds, says the opposite, or does not say."
    ),
    labels=[
        {"name": "Entailment", "description": "The contract says the hypothesis holds."},
        {"name": "Contradiction", "description": "The contract says the opposite of the hypothesis."},
        {"name": "NotMentioned", "description": "The contract does not say whether the hypothesis holds."},
    ],
    input_fields=["premise", "hypothesis"],
    shared_context_field="premise",
)

STEREOSET_LABELS = ("stereotype", "anti-stereotype", "unrelated")
STEREOSET_SPEC = TaskSpec(
    title="StereoSet",
    description=(
        "Read a short context about a group of people and one sentence that follows it, and decide whether "
        "the sentence repeats a stereotype about that group, contradicts one, or is unrelated to the context."
    ),
    labels=[
        {"name": "stereotype", "description": "The sentence repeats a widely held stereotype about the target group."},
        {
            "name": "anti-stereotype",
            "description": "The sentence says the opposite of a widely held stereotype about the target group.",
        },
        {"name": "unrelated", "description": "The sentence makes no meaningful sense as a follow-up to the context."},
    ],
    input_fields=["context", "sentence"],
)

LOGIQA2_LETTERS = ("A", "B", "C", "D")
LOGIQA2_SPEC = TaskSpec(
    title="LogiQA 2.0",
    description=(
        "Read a short passage and a question about it, and choose the one option (A, B, C or D) that the "
        "passage's logic supports."
    ),
    labels=[{"name": letter, "description": f"Option {letter} is the correct answer."} for letter in LOGIQA2_LETTERS],
    input_fields=["context", "question", "options"],
)


# --- helpers ----------------------------------------------------------------------------------


def _text_value(value: Any) -> str | None:
    """Return a record's value as text; None when it is not a plain string or number."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _json_lines(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    """Return (line number, object) for every non-blank line; refuse malformed or non-object lines."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportRefused(source, f"line {number}", f"malformed JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ImportRefused(source, f"line {number}", "expected a JSON object")
        records.append((number, record))
    if not records:
        raise ImportRefused(source, "", "the file is empty")
    return records


def _mapped_example(
    record: Mapping[str, Any], *, where: str, source: str, field_map: FieldMap, input_fields: list[str]
) -> ParsedExample:
    """Turn one jsonl/csv record into an example through the field map."""
    inputs = {}
    for name in input_fields:
        column = field_map.fields.get(name, name)
        value = _text_value(record.get(column))
        if value is None:
            problem = "missing field" if record.get(column) is None else "not text: field"
            raise ImportRefused(source, where, f"{problem} {column!r} (task field {name!r})")
        inputs[name] = value
    label = _text_value(record.get(field_map.label))
    if label is None or not label.strip():
        raise ImportRefused(source, where, f"missing label field {field_map.label!r}")
    record_id = ""
    if field_map.id:
        record_id = _text_value(record.get(field_map.id)) or ""
        if not record_id:
            raise ImportRefused(source, where, f"missing id field {field_map.id!r}")
    group = _text_value(record.get(field_map.group)) or "" if field_map.group else ""
    return ParsedExample(
        inputs=inputs,
        label=label.strip(),
        source_ref=f"{where} · id {record_id}" if record_id else where,
        group_key=group,
        # With an id column, two records with equal content but different ids are distinct items.
        identity=f"id {record_id}" if record_id else "",
    )


def _input_fields_for(columns: list[str], field_map: FieldMap, task_fields: list[str] | None) -> list[str]:
    """Return the task's input fields: the task's own, the mapped ones, or every other column."""
    if task_fields:
        return list(task_fields)
    if field_map.fields:
        return list(field_map.fields)
    skip = {field_map.label, field_map.id, field_map.group}
    return [column for column in columns if column not in skip]


# --- parsers ----------------------------------------------------------------------------------


def parse_jsonl(text: str, *, source: str, field_map: FieldMap, task_fields: list[str] | None) -> ParsedFile:
    """Read one JSON object a line; columns map onto the task's input fields."""
    records = _json_lines(text, source)
    input_fields = _input_fields_for(list(records[0][1]), field_map, task_fields)
    if not input_fields:
        raise ImportRefused(source, "line 1", "no input fields besides the label")
    examples = [
        _mapped_example(record, where=f"line {n}", source=source, field_map=field_map, input_fields=input_fields)
        for n, record in records
    ]
    return ParsedFile(examples=examples)


def parse_csv(text: str, *, source: str, field_map: FieldMap, task_fields: list[str] | None) -> ParsedFile:
    """Read a CSV file with a header row; columns map onto the task's input fields."""
    if not text.strip():
        raise ImportRefused(source, "", "the file is empty")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    if len(set(columns)) != len(columns):
        raise ImportRefused(source, "line 1", "the header names a column twice")
    input_fields = _input_fields_for(list(columns), field_map, task_fields)
    examples = []
    previous_end = reader.line_num
    try:
        for row in reader:
            where = f"line {previous_end + 1}"
            previous_end = reader.line_num
            if None in row or any(value is None for value in row.values()):
                raise ImportRefused(source, where, f"the row does not have the header's {len(columns)} columns")
            examples.append(
                _mapped_example(row, where=where, source=source, field_map=field_map, input_fields=input_fields)
            )
    except csv.Error as exc:
        raise ImportRefused(source, f"line {reader.line_num}", f"malformed CSV ({exc})") from None
    if not examples:
        raise ImportRefused(source, "", "the file has a header but no records")
    return ParsedFile(examples=examples)


def _require(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str, where: str) -> Any:
    value = record.get(key) if isinstance(record, Mapping) else None
    if value is None:
        raise ImportRefused(source, where, f"missing field {key!r}")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ImportRefused(source, where, f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def parse_contractnli(text: str, *, source: str) -> ParsedFile:
    """Read the official ContractNLI JSON: one example per document × hypothesis, evidence as offsets."""
    if not text.strip():
        raise ImportRefused(source, "", "the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise ImportRefused(source, where, f"malformed JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise ImportRefused(source, "top level", "expected an object with 'documents' and 'labels'")
    documents = _require(data, "documents", list, source, "top level")
    hypotheses = _require(data, "labels", dict, source, "top level")
    if not documents:
        raise ImportRefused(source, "top level", "the file has no documents")
    known = set(CONTRACTNLI_SPEC.label_names)
    examples = []
    for index, document in enumerate(documents):
        where = f"document #{index}"
        if not isinstance(document, dict):
            raise ImportRefused(source, where, "expected an object")
        doc_id = _require(document, "id", (int, str), source, where)
        where = f"document #{index} (id {doc_id})"
        premise = _require(document, "text", str, source, where)
        spans = _require(document, "spans", list, source, where)
        annotation_sets = _require(document, "annotation_sets", list, source, where)
        if not annotation_sets:
            raise ImportRefused(source, where, "no annotation set")
        # The release has one annotation set per document; a second one would be a second opinion
        # on the same pairs, which this task cannot hold as two gold labels.
        annotations = _require(annotation_sets[0], "annotations", dict, source, where)
        for key in sorted(annotations, key=_hypothesis_order):
            here = f"{where}, hypothesis {key}"
            annotation = annotations[key]
            hypothesis = hypotheses.get(key)
            if not isinstance(hypothesis, dict) or not isinstance(hypothesis.get("hypothesis"), str):
                raise ImportRefused(source, here, f"hypothesis {key!r} is not defined under 'labels'")
            choice = _require(annotation, "choice", str, source, here)
            if choice not in known:
                raise ImportRefused(source, here, f"unknown label {choice!r} (expected {', '.join(sorted(known))})")
            evidence = []
            for span_index in _require(annotation, "spans", list, source, here):
                if not isinstance(span_index, int) or not 0 <= span_index < len(spans):
                    raise ImportRefused(source, here, f"evidence span {span_index!r} is not a span of the document")
                start, end = spans[span_index]
                if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= len(premise)):
                    raise ImportRefused(source, here, f"span {span_index} {spans[span_index]!r} is outside the text")
                evidence.append({"start": start, "end": end})
            examples.append(
                ParsedExample(
                    inputs={"premise": premise, "hypothesis": hypothesis["hypothesis"]},
                    label=choice,
                    source_ref=f"document {doc_id} · {key}",
                    group_key=f"document-{doc_id}",
                    evidence=evidence,
                    # test.json holds one contract twice (documents 52 and 97, two file names).
                    identity=f"document {doc_id}",
                )
            )
    return ParsedFile(examples=examples, task_spec=CONTRACTNLI_SPEC)


def _hypothesis_order(key: str) -> tuple[int, str]:
    """Order ``nda-2`` before ``nda-10``."""
    prefix, _, number = key.rpartition("-")
    return (int(number), prefix) if number.isdigit() else (10**9, key)


def parse_stereoset(text: str, *, source: str) -> ParsedFile:
    """Read the flattened StereoSet JSONL: one example per candidate sentence, in an order that hides the label."""
    examples = []
    for number, record in _json_lines(text, source):
        where = f"line {number}"
        context = _require(record, "context", str, source, where)
        candidates = [(_require(record, label, str, source, where), label) for label in STEREOSET_LABELS]
        # The file stores each sentence under its label, always in the same order; shuffle with a
        # seed taken from the context alone so neither row order nor ids reveal the label.
        random.Random(f"{number}\n{context}").shuffle(candidates)
        group = "context-" + hashlib.sha256(context.encode()).hexdigest()[:16]
        for sentence, label in candidates:
            examples.append(
                ParsedExample(
                    inputs={"context": context, "sentence": sentence},
                    label=label,
                    source_ref=where,
                    group_key=group,
                    # The flat file dropped StereoSet's item ids; a line is one item, and 18 sentences
                    # recur verbatim in two items that share a context.
                    identity=where,
                )
            )
    return ParsedFile(examples=examples, task_spec=STEREOSET_SPEC)


def parse_logiqa2(text: str, *, source: str) -> ParsedFile:
    """Read LogiQA 2.0 JSON lines: passage, question and lettered options in; the answer letter out."""
    examples = []
    for number, record in _json_lines(text, source):
        where = f"line {number}"
        passage = _require(record, "text", str, source, where)
        question = _require(record, "question", str, source, where)
        options = _require(record, "options", list, source, where)
        answer = _require(record, "answer", int, source, where)
        record_id = _require(record, "id", (int, str), source, where)
        if len(options) != len(LOGIQA2_LETTERS) or not all(isinstance(o, str) for o in options):
            raise ImportRefused(source, where, f"expected {len(LOGIQA2_LETTERS)} text options, got {len(options)}")
        if not 0 <= answer < len(LOGIQA2_LETTERS):
            raise ImportRefused(source, where, f"unknown label: answer index {answer} is not 0-3")
        lettered = "\n".join(
            f"{letter}. {option.strip()}" for letter, option in zip(LOGIQA2_LETTERS, options, strict=True)
        )
        examples.append(
            ParsedExample(
                inputs={"context": passage, "question": question, "options": lettered},
                label=LOGIQA2_LETTERS[answer],
                source_ref=f"{where} · id {record_id}",
                group_key="passage-" + hashlib.sha256(passage.encode()).hexdigest()[:16],
                # 14 questions recur verbatim under two ids in the release; each id is one item.
                identity=f"id {record_id}",
            )
        )
    return ParsedFile(examples=examples, task_spec=LOGIQA2_SPEC)


Parser = Callable[..., ParsedFile]
_KNOWN_PARSERS: dict[str, Parser] = {
    "contractnli": parse_contractnli,
    "stereoset": parse_stereoset,
    "logiqa2": parse_logiqa2,
}


def parse_file(
    text: str,
    *,
    fmt: str,
    source: str,
    field_map: FieldMap | None = None,
    task_fields: list[str] | None = None,
) -> ParsedFile:
    """Parse a whole file of the given format; raise ImportRefused on the first problem."""
    if fmt in _KNOWN_PARSERS:
        if field_map and field_map.fields:
            raise ValidationError(f"The {fmt} format fixes its fields; a field mapping only applies to jsonl and csv.")
        return _KNOWN_PARSERS[fmt](text, source=source)
    if fmt == "jsonl":
        return parse_jsonl(text, source=source, field_map=field_map or FieldMap(), task_fields=task_fields)
    if fmt == "csv":
        return parse_csv(text, source=source, field_map=field_map or FieldMap(), task_fields=task_fields)
    raise ValidationError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
