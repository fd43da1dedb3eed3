#!/usr/bin/env python3
"""gen_omni_tokenizer.py - builds tests/data/tokenizer/qwen3-omni-tokenizer.json.xz from Qwen3's tokenizer.json.

Qwen3-Omni's thinker uses Qwen3's byte-level BPE vocabulary (151,643 entries, same merges and pre-tokenizer) plus
seven more added tokens after Qwen3's 26 (ids 151643..151668). Their strings and ids, in this order, are the ones
the Qwen3-Omni checkpoints and config.json use (audio_start_token_id 151669, audio_end_token_id 151670,
tts_pad_token_id 151671, tts_bos_token_id 151672, tts_eos_token_id 151673, audio_token_id 151675); all are special,
not normalized, no strip flags. Usage, from the repository root:

    python3 tests/gen_omni_tokenizer.py
"""
import json
import lzma
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tokenizer")
OMNI_TOKENS = [
    (151669, "<|audio_start|>"),
    (151670, "<|audio_end|>"),
    (151671, "<tts_pad>"),
    (151672, "<tts_text_bos>"),
    (151673, "<tts_text_eod>"),
    (151674, "<tts_text_bos_single>"),
    (151675, "<|audio_pad|>"),
]


def main():
    with lzma.open(os.path.join(HERE, "qwen3-tokenizer.json.xz"), "rt", encoding="utf-8") as f:
        tok = json.load(f)
    have = {a["id"] for a in tok["added_tokens"]}
    assert max(have) == 151668, "expected Qwen3's added tokens to end at id 151668"
    for tid, content in OMNI_TOKENS:
        tok["added_tokens"].append({"id": tid, "content": content, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": True})
    text = json.dumps(tok, ensure_ascii=False, indent=2)
    with lzma.open(os.path.join(HERE, "qwen3-omni-tokenizer.json.xz"), "wt", encoding="utf-8",
                   preset=9 | lzma.PRESET_EXTREME) as f:
        f.write(text)


if __name__ == "__main__":
    main()
