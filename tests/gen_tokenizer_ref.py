#!/usr/bin/env python3
"""gen_tokenizer_ref.py - reference outputs for tests/test_tokenizer.c and tests/test_chat.c, made with Hugging Face
tokenizers and transformers on the reference machine (no network needed; everything comes from tests/data).

Writes into $OUT (or --out):
  tokenizer_ref.json.xz  for each tokenizer (qwen3, omni = Qwen3-Omni, qwen35re = Qwen3's vocabulary with the Qwen3.5
                      pre-tokenizer regex, flags = flags-tokenizer.json, flags_im = the same with ignore_merges):
                      encode(line, add_special_tokens=False).ids and decode(ids) for every corpus.json line and
                      (as ids_u, decoded_u in hex) every corpus_unicode.json line, and
                      FNV-1a-64 hashes, per block of 1024 ids, of decode([id]) for each id, of
                      id_to_token(id) for each id, and of decode(list(range(block))).
  chat_ref.json       apply_chat_template renders of tests/data/tokenizer/chat_cases.json with the Qwen3-Omni and
                      Qwen3 templates.
Run from the repository root:  PYTHONUNBUFFERED=1 python3 tests/gen_tokenizer_ref.py --out $OUT
For working on the chat renderer without the reference machine, --chat-only renders with jinja2 alone (the
environment transformers uses: sandboxed, trim_blocks, lstrip_blocks).
"""
import argparse
import json
import lzma
import os
import sys
import time

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tokenizer")
BLOCK = 1024
QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN35_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def load_json_xz(name):
    with lzma.open(os.path.join(DATA, name), "rt", encoding="utf-8") as f:
        return f.read()


def tokenizer_refs(corpus, ucorpus):
    import tokenizers
    from tokenizers import Tokenizer

    texts = {"qwen3": load_json_xz("qwen3-tokenizer.json.xz"), "omni": load_json_xz("qwen3-omni-tokenizer.json.xz")}
    j = json.loads(texts["qwen3"])
    assert j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] == QWEN2_RE
    j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = QWEN35_RE
    texts["qwen35re"] = json.dumps(j, ensure_ascii=False)
    texts["flags"] = load_json_xz("flags-tokenizer.json.xz")
    j = json.loads(texts["flags"])
    j["model"]["ignore_merges"] = True
    texts["flags_im"] = json.dumps(j, ensure_ascii=False)
    out = {"tokenizers_version": tokenizers.__version__, "block": BLOCK, "tokenizers": {}}
    for name, text in texts.items():
        t0 = time.time()
        tok = Tokenizer.from_str(text)
        t1 = time.time()
        r = {"load_s": round(t1 - t0, 3), "vocab_size": tok.get_vocab_size(with_added_tokens=True)}
        enc = tok.encode_batch(corpus, add_special_tokens=False)
        r["ids"] = [e.ids for e in enc]
        r["decoded"] = [tok.decode(e.ids, skip_special_tokens=False) for e in enc]
        r["encode_s"] = round(time.time() - t1, 3)
        uenc = tok.encode_batch(ucorpus, add_special_tokens=False)
        r["ids_u"] = [e.ids for e in uenc]
        r["decoded_u"] = [tok.decode(e.ids, skip_special_tokens=False).encode("utf-8", "surrogatepass").hex()
                          for e in uenc]
        big = "\n".join(corpus * 60)
        t2 = time.time()
        nbig = len(tok.encode(big, add_special_tokens=False).ids)
        r["big_bytes"], r["big_ids"], r["big_encode_s"] = len(big.encode()), nbig, round(time.time() - t2, 3)
        if name in ("qwen3", "omni", "flags"):
            n = r["vocab_size"]
            id_hash, tok_hash, range_hash = [], [], []
            for lo in range(0, n, BLOCK):
                ids = list(range(lo, min(n, lo + BLOCK)))
                id_hash.append(fnv1a64(b"".join(tok.decode([i], skip_special_tokens=False).encode() + b"\xff"
                                                 for i in ids)))
                tok_hash.append(fnv1a64(b"".join((tok.id_to_token(i) or "").encode() + b"\xff" for i in ids)))
                range_hash.append(fnv1a64(tok.decode(ids, skip_special_tokens=False).encode()))
            r["id_decode_hash"], r["token_hash"], r["range_decode_hash"] = id_hash, tok_hash, range_hash
            r["decode_skip_special"] = [tok.decode(e.ids, skip_special_tokens=True) for e in enc]
        out["tokenizers"][name] = r
        print(f"{name}: vocab {r['vocab_size']}, load {r['load_s']} s, corpus encode {r['encode_s']} s, "
              f"{r['big_bytes']} bytes -> {r['big_ids']} ids in {r['big_encode_s']} s (one call)", flush=True)
    return out


def hf_messages(case):
    msgs = []
    for m in case["messages"]:
        items = m["items"]
        if all(it["kind"] == "text" for it in items):
            content = "".join(it["text"] for it in items)
        else:
            content = []
            for it in items:
                k = it["kind"]
                if k == "text":
                    content.append({"type": "text", "text": it["text"]})
                else:
                    content.append({"type": k, k: {"audio": "a.wav", "image": "i.png", "video": "v.mp4"}[k]})
        msgs.append({"role": m["role"], "content": content})
    return msgs


def jinja_render(template, messages, add_generation_prompt, kwargs):
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, **kw: json.dumps(x, ensure_ascii=False, **kw)
    return env.from_string(template).render(messages=messages, tools=None, documents=None,
                                            add_generation_prompt=add_generation_prompt, **kwargs)


def chat_refs(jinja_only):
    cases = json.load(open(os.path.join(DATA, "chat_cases.json"), encoding="utf-8"))
    templates = {
        "omni": json.load(open(os.path.join(DATA, "qwen3-omni-chat_template.json"), encoding="utf-8"))["chat_template"],
        "qwen3": json.load(open(os.path.join(DATA, "tokenizer_config.json"), encoding="utf-8"))["chat_template"],
    }
    hf = None
    out = {"method": "jinja2", "renders": {}}
    if not jinja_only:
        try:
            import transformers
            from tokenizers import Tokenizer

            cls = getattr(transformers, "PreTrainedTokenizerFast", None) or getattr(transformers, "TokenizersBackend")
            hf = cls(tokenizer_object=Tokenizer.from_str(load_json_xz("qwen3-omni-tokenizer.json.xz")))
            out["method"] = "transformers " + transformers.__version__ + " " + cls.__name__ + ".apply_chat_template"
        except Exception as ex:
            print(f"FAILED to set up transformers ({ex!r}); rendering with bare jinja2", flush=True)
    for case in cases:
        kwargs = {} if case["thinking"] is None else {"enable_thinking": case["thinking"]}
        msgs = hf_messages(case)
        for style in case["styles"]:
            key = case["name"] + "/" + style
            if hf is not None:
                check = jinja_render(templates[style], msgs, case["gen"], kwargs)
                try:
                    text = hf.apply_chat_template(msgs, chat_template=templates[style], tokenize=False,
                                                  add_generation_prompt=case["gen"], **kwargs)
                    if not isinstance(text, str):
                        raise TypeError(f"apply_chat_template returned {type(text)}")
                except Exception as ex:
                    print(f"FAILED: {key}: apply_chat_template: {ex!r}; using bare jinja2", flush=True)
                    text = check
                if check != text:
                    print(f"note: {key}: bare jinja2 differs from transformers", flush=True)
            else:
                text = jinja_render(templates[style], msgs, case["gen"], kwargs)
            out["renders"][key] = text
    print(f"chat: {len(out['renders'])} renders with {out['method']}", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--chat-only", action="store_true", help="only chat renders, with jinja2 (no tokenizers)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if not a.chat_only:
        corpus = json.load(open(os.path.join(DATA, "corpus.json"), encoding="utf-8"))
        ucorpus = [bytes.fromhex(h).decode("utf-8") for h in
                   json.load(open(os.path.join(DATA, "corpus_unicode.json"), encoding="utf-8"))]
        try:
            ref = tokenizer_refs(corpus, ucorpus)
            with lzma.open(os.path.join(a.out, "tokenizer_ref.json.xz"), "wt", encoding="utf-8", preset=9) as f:
                json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))
        except Exception as ex:  # keep going: the chat part is independent
            import traceback
            traceback.print_exc()
            print("tokenizer refs FAILED:", ex, flush=True)
    chat = chat_refs(a.chat_only)
    with open(os.path.join(a.out, "chat_ref.json"), "w", encoding="utf-8") as f:
        json.dump(chat, f, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
