#!/usr/bin/env python3
"""gen_tokenizer_corpus.py - writes the tokenizer test inputs in tests/data/tokenizer/:

  corpus.json            the texts whose token ids the tokenizer test compares with Hugging Face tokenizers
                         (reference ids: tests/gen_tokenizer_ref.py, run on the reference machine): hand-written lines
                         covering scripts, emoji, code, whitespace, numbers, contractions, text that NFC changes, every
                         added token alone and inside text, lines for the added-token flags, then pseudo-random lines
                         (fixed seed) mixing the character classes the pre-tokenizer regex distinguishes;
  flags-tokenizer.json.xz a small tokenizer.json (Qwen3's first 3000 merges, legacy "a b" merges, byte-level
                         alphabet) whose added tokens use single_word, lstrip, rstrip and normalized;
  corpus_unicode.json    random texts over all of Unicode (code points assigned by Unicode 9.0, so that every table
                         involved agrees on them: HF's NFC crate is older than the UCD used here), with NUL and controls;
                         stored as hex strings of UTF-8 so any code point survives every JSON reader;
  nfc_sample.txt.xz      part of Unicode's NormalizationTest.txt (parts 0, 2, 3 and every 8th line of part 1), from
                         /usr/share/unicode (apt-get install unicode-data).

Usage, from the repository root:  python3 tests/gen_tokenizer_corpus.py
"""
import bz2
import json
import lzma
import os
import random

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "tokenizer")
OUT = os.path.join(DATA, "corpus.json")

QWEN3_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
               "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
               "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
               "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
               "</tool_response>", "<think>", "</think>"]
OMNI_ADDED = ["<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
              "<tts_text_bos_single>", "<|audio_pad|>"]

HAND = [
    # English, contractions in odd case, the long s
    "Hello world",
    "Hello, my dog is cute",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you're right: it's what they've said, and I'll do what he'd do.",
    "I'M SURE YOU'RE RIGHT; IT'S WHAT THEY'VE SAID AND I'LL DO WHAT HE'D DO",
    "don'T wOn'T 'S 'T 'Re 'rE 'VE 've 'M 'm 'LL 'lL 'D 'd 'x 'sx 'rex",
    "'s's's 'll'll ''s '''' 'ſ and 'ſtill",
    "Rock 'n' roll ain't dead, y'all",
    # German, French, Spanish, Vietnamese, Polish, Turkish, Greek
    "Grüße aus München! Die Straße ist 5 km lang; Äpfel, Öl und Übermut.",
    "Ça va? L'œuvre d'art coûte 12,50 € — très cher… « Voilà »",
    "¿Dónde está el baño? ¡Mañana será otro día!",
    "Tiếng Việt có nhiều dấu: Nguyễn, Phở, Đà Nẵng, người, ệ ặ ẫ.",
    "Zażółć gęślą jaźń. İstanbul'da ılık bir gün.",
    "Ελληνικά: Καλημέρα κόσμε· ή; ΐ ΰ",
    # Russian, Ukrainian
    "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ґанок, їжак, є, ЇЖАК",
    # CJK, Japanese, Korean
    "你好，世界！今天天气很好。我们去公园散步吧。",
    "机器学习是人工智能的一个分支，它使用统计方法让计算机从数据中学习。",
    "日本語のテキスト：ひらがな、カタカナ、漢字。東京タワーは333メートルです。",
    "半角ｶﾀｶﾅとＦｕｌｌｗｉｄｔｈ　ｔｅｘｔ（全角）",
    "한국어 텍스트입니다. 안녕하세요! 서울특별시 강남구",
    # Arabic, Hebrew (with marks), Hindi, Thai, Amharic
    "مرحبا بالعالم! العَرَبِيَّةُ لغةٌ جميلة. ١٢٣٤٥",
    "שָׁלוֹם עוֹלָם! עברית ללא ניקוד.",
    "नमस्ते दुनिया! हिन्दी में लिखा गया पाठ। क़िला ज़रूर",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "ሰላም ለዓለም",
    # emoji: ZWJ sequences, flags, skin tones, keycaps, variation selectors
    "Family: 👨‍👩‍👧‍👦 couple: 👩‍❤️‍💋‍👨 flags: 🇩🇪🇫🇷🇯🇵🏴‍☠️ 🏳️‍🌈",
    "Thumbs 👍🏽👍🏿 keycap 1️⃣ #️⃣ hearts ❤️♥ stars ⭐🌟✨ 😀😃😄😁🤣",
    "🧑🏻‍💻 writes code; 🐈‍⬛ sleeps. ©®™ ☃︎ ☃️",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "const f = (x) => x ** 2; // arrow\nlet s = `template ${f(3)}`;\nif (a !== b && c >= d) { console.log(s); }",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n    Ok(())\n}",
    "for f in *.txt; do echo \"$f\" | sed -e 's/a/b/g' >> out.log 2>&1; done",
    "<html><body class=\"x\"><p>Hi &amp; bye</p><!-- comment --></body></html>",
    "{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"\\u00e9\"}}",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%' ORDER BY id DESC;",
    "x=1;y=2;z=x+y*3-4/5%6**7//8",
    # whitespace
    "a  b   c    d     e",
    "    leading and trailing    ",
    "tabs\there\t\tand\t\t\tthere\t",
    "windows\r\nline\r\nendings\r\n",
    "old mac\rline\rendings",
    "mixed \n \n  \n\n\t\n x",
    "\n\n\n\nfour newlines then text",
    "text then many spaces" + " " * 40,
    " " * 17 + "x" + "\t" * 9 + "y",
    "\u00a0no-break\u00a0space \u3000ideographic\u3000space \u2028line sep\u2029para sep \u0085nel",
    "zero\u200bwidth\u200cjoin\u200dner \ufeffbom \u2060wj",
    "   \n",
    "\r\n\r\n",
    "a \r\n b", " \r\n", "\t\r\n\t", "x\n \n", "x \n", "x  \n\n  y", "x\r\r\ny", ".\n\n", "!!\r\n\r\nok",
    "\u3000a \u00a0\u00a0b \u2028c \u0085d \u000be \u000cf", "abc123def v1.2.3 1st 2nd 3rd 4th 10x 0.5mg",
    "'\u0301s x'\u0301 \u0301'", "\u0915\u094d\u0937 \u0e01\u0e34\u0e19 \u0627\u064e\u0644",
    " ",
    "\t",
    "\n",
    # numbers
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 10000",
    "3.14159265358979323846264338327950288419716939937510",
    "The year 2024, phone +1 (555) 123-4567, IP 192.168.0.1, 1e-9, 0x1F, 1,000,000.00",
    "Roman Ⅻ, fractions ½ ¾ ⅞, superscripts x² y³, circled ① ②, Arabic-Indic ٣ and Devanagari ४",
    "12345678901234567890123456789012345678901234567890",
    # text that NFC changes: combining sequences, singletons, Hangul jamo, reordering
    "cafe\u0301 na\u0308ive re\u0301sume\u0301 A\u030a \u212b \u2126 \u212a",
    "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af",
    "q\u0307\u0323 q\u0323\u0307 e\u0323\u0302 e\u0302\u0323 \u1e9b\u0323",
    "\u0958 \u0915\u093c \u0340 \u0341 \u0343 \u0344 \u0374 \u037e \u0387",
    "\u0301leading combining mark and a\u0300\u0301\u0302\u0303\u0304 stack",
    "o\u0308\u0304 \u01ea\u0304 \u0041\u0308\u0301 \u00c5\u0301",
    "\u05e9\u05c1\u05b8 \u05e9\u05b8\u05c1",
    "ﬁ ﬂ ﬀ ĳ ǆ ㎏ ™ (compatibility characters stay: NFC only)",
    # invalid-looking and near-miss special tokens
    "<|im_start", "im_start|>", "<|im_end |>", "< |im_end|>", "<|IM_END|>", "<<|im_end|>>", "<|im_end|>>",
    "<||im_end||>", "<|<|im_start|>|>", "<think", "</think", "<think></think>", "<think>\nreasoning\n</think>\n\nanswer",
    "\ufffd replacement \ufffd\ufffd", "control \x01\x02\x1b[31mred\x1b[0m \x7f del",
    "\\u0000 \\n \\t literal escapes", "%s %d {0} {{}} $1 \\1",
    "a" * 300,
    "ab" * 200,
    "😀" * 50,
    "你" * 100,
    "---------------------------------------- ========== ********** ..........",
    "!!!??? ... ,,, ;;; ::: ''' \"\"\" ``` ~~~ ^^^",
]

# every added token alone and inside text
for tok in QWEN3_ADDED + OMNI_ADDED:
    HAND.append(tok)
    HAND.append(f"before{tok}after")
    HAND.append(f" {tok} spaced {tok}{tok}\n")
HAND.append("".join(QWEN3_ADDED + OMNI_ADDED))
HAND.append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\n")
HAND.append("<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|><|vision_start|><|image_pad|>"
            "<|vision_end|><|vision_start|><|video_pad|><|vision_end|>What is this?<|im_end|>\n")

# added-token flags (tests/data/tokenizer/flags-tokenizer.json.xz); harmless for the real tokenizers
FLAG_TOKENS = [
    {"content": "<sw>", "single_word": True, "lstrip": False, "rstrip": False, "normalized": False, "special": False},
    {"content": "[L]", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False, "special": True},
    {"content": "[R]", "single_word": False, "lstrip": False, "rstrip": True, "normalized": False, "special": True},
    {"content": "[LR]", "single_word": False, "lstrip": True, "rstrip": True, "normalized": False, "special": False},
    {"content": "cafe\u0301", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True,
     "special": False},
    {"content": "the", "single_word": False, "lstrip": False, "rstrip": False, "normalized": True, "special": False},
    {"content": "<|end|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
     "special": True},
    {"content": "<|end|>xy", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
     "special": False},
    {"content": "\u212b!", "single_word": True, "lstrip": False, "rstrip": False, "normalized": True,
     "special": True},
]
HAND += [
    "a<sw>b", "a <sw> b", "<sw>", "x<sw>", "<sw>x", "<sw>_", "_<sw>", "é<sw>", "1<sw>", "<sw>2", "-<sw>-", "<sw><sw>",
    "  [L]  x", "x  [R]  y", "[L][L]  [R]   [R]", " [LR] ", "a [LR] b [LR]c", "\u00a0[L]\u3000", "[R]\n\n x",
    "\t[L]\t[R]\t", "[L]", "[R]", "  [R]  ",
    "cafe\u0301 café CAFÉ cafés", "the theme there THE them", "<|end|>xy<|end|>x<|end|>y<|end|>",
    "\u212b! \u00c5! A\u030a! x\u00c5! \u00c5!x",
]

# pseudo-random mixtures of the classes the regex distinguishes
POOL = [
    "a", "b", "z", "A", "Q", "é", "ß", "ж", "Ж", "α", "你", "の", "カ", "한", "ع", "ש", "क", "ก",
    "0", "7", "9", "٣", "½", "²",
    " ", " ", " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000",
    ".", ",", "!", "?", "-", "_", "(", ")", "\"", "'", "`", "#", "@", "/", "\\", "€", "$", "%", "&", "*", "+", "=",
    "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re",
    "\u0301", "\u0308", "\u093c", "\u0e31", "\u200d", "\ufe0f",
    "😀", "🇩", "🇪", "👍", "🏽",
    "hello", "World", "the", "ing", "tion", "1234", "    ", "\n\n",
    "<|im_end|>", "<|im_start|>", "<think>", "<|audio_pad|>", "<|im_", "|>", "<", ">", "|",
    "<sw>", "[L]", "[R]", "[LR]", "café", "the", "<|end|>", "\u212b!",
]
rng = random.Random(20240607)
RANDOM = []
for i in range(160):
    n = rng.randint(1, 40)
    RANDOM.append("".join(rng.choice(POOL) for _ in range(n)))


def flags_tokenizer():
    with lzma.open(os.path.join(DATA, "qwen3-tokenizer.json.xz"), "rt", encoding="utf-8") as f:
        q = json.load(f)
    vocab = {}
    for tok, tid in sorted(q["model"]["vocab"].items(), key=lambda kv: kv[1]):
        if tid < 256:  # Qwen's first 256 ids are the byte-level alphabet
            vocab[tok] = tid
    merges = []
    for a, b in q["model"]["merges"][:3000] + [["Å", "¿"], ["Å¿", "t"]]:  # the last two: 'ſt merges (the long s)
        merges.append(a + " " + b)
        vocab.setdefault(a + b, len(vocab))
    assert len(vocab) >= 256 + 2900
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [dict(id=len(vocab) + i, **t) for i, t in enumerate(FLAG_TOKENS)],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": q["pre_tokenizer"],
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["#version: 0.2"] + merges},
    }
    with lzma.open(os.path.join(DATA, "flags-tokenizer.json.xz"), "wt", encoding="utf-8", preset=9) as f:
        json.dump(tok, f, ensure_ascii=False)


def nfc_sample(ucd="/usr/share/unicode/NormalizationTest.txt.bz2"):
    out, part, k = [], None, 0
    with bz2.open(ucd, "rt", encoding="utf-8") as f:
        for line in f:
            if line.startswith("@Part"):
                part = line.split()[0]
                out.append(line)
                continue
            if not line.strip() or line.startswith("#"):
                continue
            k += 1
            if part != "@Part1" or k % 8 == 0:
                out.append(line.split("#")[0].rstrip() + "\n")
    with lzma.open(os.path.join(DATA, "nfc_sample.txt.xz"), "wt", encoding="utf-8", preset=9) as f:
        f.write("# subset of Unicode NormalizationTest.txt (columns c1;c2;c3;c4;c5), see tests/gen_tokenizer_corpus.py\n")
        f.writelines(out)


def unicode_corpus(ucd="/usr/share/unicode", n_lines=500, seed=97):
    age = {}
    for raw in open(os.path.join(ucd, "DerivedAge.txt"), encoding="utf-8"):
        f = raw.split("#")[0].split(";")
        if len(f) == 2:
            a, _, b = f[0].strip().partition("..")
            v = tuple(int(x) for x in f[1].strip().split("."))
            for c in range(int(a, 16), int(b or a, 16) + 1):
                age[c] = v
    gc = {}
    first = None
    for raw in open(os.path.join(ucd, "UnicodeData.txt"), encoding="utf-8"):
        p = raw.split(";")
        c = int(p[0], 16)
        if p[1].endswith("First>"):
            first = c
            continue
        for k in range(first if p[1].endswith("Last>") else c, c + 1):
            gc[k] = p[2]
        first = None
    ok = [c for c, v in age.items() if v <= (9, 0) and gc.get(c, "Cn") not in ("Cs", "Co", "Cn")]
    marks = [c for c in ok if gc[c].startswith("M")]
    spaces = [c for c in ok if gc[c] in ("Zs", "Zl", "Zp")] + [9, 10, 13, 0x85, 0x0B, 0x0C]
    rng = random.Random(seed)
    out = []
    for _ in range(n_lines):
        parts = []
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            if r < 0.45:
                parts.append(chr(rng.choice(ok)))
            elif r < 0.6:
                parts.append(chr(rng.choice(marks)))
            elif r < 0.75:
                parts.append(chr(rng.choice(spaces)))
            elif r < 0.85:
                parts.append(rng.choice(["'s", "'LL", "'ve", "'ſt", "the", "ing", " x", "12", "\x00", "\r\n", "<|im_end|>"]))
            else:
                parts.append(chr(rng.randint(0x20, 0x7E)))
        out.append("".join(parts).encode("utf-8").hex())
    with open(os.path.join(DATA, "corpus_unicode.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=0)
        f.write("\n")


def main():
    lines = HAND + RANDOM
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(lines, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(lines)} lines -> {OUT}")
    flags_tokenizer()
    nfc_sample()
    unicode_corpus()


if __name__ == "__main__":
    main()
