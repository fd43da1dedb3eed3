#!/usr/bin/env python3
"""gen_unicode_tables.py - writes engine/unicode_tables.c, the character tables the tokenizer needs.

Source: the Unicode Character Database as packaged by Debian (`apt-get install unicode-data`, files in
/usr/share/unicode). Usage, from the repository root:

    python3 tools/gen_unicode_tables.py [UCD_DIR] > engine/unicode_tables.c

Tables (all sorted, looked up by binary search in engine/unicode.c):
  uni_class_runs  runs of code points sharing one set of class bits (start | bits << 24), covering U+0000..U+10FFFF:
                  L (General_Category L*), N (N*), WS (White_Space), M (M*), W (the `\\w` of Rust's regex crate:
                  Alphabetic | M | Nd | Pc | Join_Control), NFC_CARE (NFC_Quick_Check != Yes, or ccc != 0).
  uni_ccc_runs    runs of equal Canonical_Combining_Class (start | ccc << 24), covering everything.
  uni_decomp      canonical decomposition mappings {cp, first, second (0 for singletons)}, sorted by cp
                  (Hangul syllables are decomposed algorithmically and are not listed).
  uni_comp        canonical compositions {first, second, composite}: two-character decompositions of characters
                  not in Full_Composition_Exclusion, sorted by (first, second).
  uni_class_latin1 the class bits of U+0000..U+00FF, a direct table for the common case.
"""
import os
import re
import sys

UCD = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode"
NCP = 0x110000
B_L, B_N, B_WS, B_M, B_W, B_NFC = 1, 2, 4, 8, 16, 32


def lines(name):
    with open(os.path.join(UCD, name), encoding="utf-8") as f:
        for raw in f:
            s = raw.split("#", 1)[0].strip()
            if s:
                yield [x.strip() for x in s.split(";")]


def cp_range(field):
    if ".." in field:
        a, b = field.split("..")
        return int(a, 16), int(b, 16)
    return int(field, 16), int(field, 16)


def version():
    with open(os.path.join(UCD, "ReadMe.txt"), encoding="utf-8") as f:
        for line in f:
            m = re.search(r"Version (\d+\.\d+\.\d+) of the Unicode Standard", line)
            if m:
                return "Unicode " + m.group(1)
    return "unknown version"


gc = [""] * NCP
ccc = [0] * NCP
decomp = {}
first = None
with open(os.path.join(UCD, "UnicodeData.txt"), encoding="utf-8") as f:
    for raw in f:
        p = raw.rstrip("\n").split(";")
        cp = int(p[0], 16)
        if p[1].endswith(", First>"):
            first = cp
            continue
        lo = first if p[1].endswith(", Last>") else cp
        first = None
        for c in range(lo, cp + 1):
            gc[c] = p[2]
            ccc[c] = int(p[3])
        if p[5] and not p[5].startswith("<"):
            decomp[cp] = [int(x, 16) for x in p[5].split()]

props = {}
for p in lines("PropList.txt"):
    if p[1] in ("White_Space", "Join_Control"):
        a, b = cp_range(p[0])
        props.setdefault(p[1], set()).update(range(a, b + 1))
for p in lines("DerivedCoreProperties.txt"):
    if p[1] == "Alphabetic":
        a, b = cp_range(p[0])
        props.setdefault("Alphabetic", set()).update(range(a, b + 1))
excl = set()
nfc_no = set()
for p in lines("DerivedNormalizationProps.txt"):
    if p[1] == "Full_Composition_Exclusion":
        a, b = cp_range(p[0])
        excl.update(range(a, b + 1))
    elif p[1] == "NFC_QC" and p[2] in ("N", "M"):
        a, b = cp_range(p[0])
        nfc_no.update(range(a, b + 1))

cls = [0] * NCP
for c in range(NCP):
    g = gc[c]
    v = 0
    if g.startswith("L"):
        v |= B_L
    if g.startswith("N"):
        v |= B_N
    if g.startswith("M"):
        v |= B_M
    if c in props["White_Space"]:
        v |= B_WS
    if c in props["Alphabetic"] or g.startswith("M") or g in ("Nd", "Pc") or c in props["Join_Control"]:
        v |= B_W
    if c in nfc_no or ccc[c] != 0:
        v |= B_NFC
    cls[c] = v


def runs(vals):
    out = []
    prev = None
    for c in range(NCP):
        if vals[c] != prev:
            out.append((c, vals[c]))
            prev = vals[c]
    return out


def emit_runs(name, rs, what):
    print(f"/* {what}: {len(rs)} runs, each start | value << 24 */")
    print(f"const uint32_t {name}[] = {{")
    row = []
    for start, val in rs:
        row.append(f"0x{(val << 24) | start:08x}")
        if len(row) == 8:
            print("    " + ", ".join(row) + ",")
            row = []
    if row:
        print("    " + ", ".join(row) + ",")
    print("};")
    print(f"const int {name.replace('_runs', '_nruns')} = {len(rs)};\n")


def emit_triples(name, rows, what):
    print(f"/* {what}: {len(rows)} entries */")
    print(f"const uint32_t {name}[][3] = {{")
    line = []
    for r in rows:
        line.append("{0x%x, 0x%x, 0x%x}" % r)
        if len(line) == 4:
            print("    " + ", ".join(line) + ",")
            line = []
    if line:
        print("    " + ", ".join(line) + ",")
    print("};")
    print(f"const int {name}_n = {len(rows)};\n")


dec_rows = sorted((cp, d[0], d[1] if len(d) > 1 else 0) for cp, d in decomp.items())
comp_rows = sorted((d[0], d[1], cp) for cp, d in decomp.items() if len(d) == 2 and cp not in excl)

print(f"/* unicode_tables.c - GENERATED by tools/gen_unicode_tables.py from the Unicode Character Database")
print(f" * ({version()}, Debian package unicode-data). Do not edit; rerun the script instead. */")
print('#include "unicode.h"\n')
emit_runs("uni_class_runs", runs(cls), "class bits (UNI_L, UNI_N, UNI_WS, UNI_M, UNI_W, UNI_NFC_CARE)")
print("/* class bits of U+0000..U+00FF, the fast path */")
print("const uint8_t uni_class_latin1[256] = {")
for r in range(0, 256, 16):
    print("    " + ", ".join(str(cls[c]) for c in range(r, r + 16)) + ",")
print("};\n")
emit_runs("uni_ccc_runs", runs(ccc), "Canonical_Combining_Class")
emit_triples("uni_decomp", dec_rows, "canonical decompositions {cp, first, second}")
emit_triples("uni_comp", comp_rows, "canonical compositions {first, second, composite}")
