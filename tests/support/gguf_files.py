"""GGUF files for tests: a copy of the bundled model with the metadata an instruction-tuned release carries."""
from __future__ import annotations

from pathlib import Path

# Gemma's turn markers: the tokens exist in the bundled model's vocabulary as special tokens.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def gguf_with_chat_template(source: Path, target: Path, template: str = GEMMA_CHAT_TEMPLATE) -> Path:
    """Write a copy of a GGUF whose metadata carries ``tokenizer.chat_template``, tensors unchanged."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(source, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    writer = gguf.GGUFWriter(target, arch=arch.contents(), endianess=reader.endianess)
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    details = MetadataDetails(gguf.GGUFValueType.STRING, template)
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE: details}, [])
    return target
