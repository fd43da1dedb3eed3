#!/usr/bin/env python3
"""gen_mel_ref.py — test inputs and reference log-mel features for audio/mel.c (tests/test_audio_mel.c).

Two steps, run once each when the references need remaking:

  python3 tests/gen_mel_ref.py inputs [DIR]
      Writes the synthetic test clips as 16 kHz mono 16-bit WAVs into DIR (default tests/data/audio). Standard
      library only (runs on the build machine). 16-bit samples make the C and Python sides read bit-identical
      float32 input (int16 / 32768). The speech clip (speech16k.wav) is made separately with espeak-ng and sox:
          espeak-ng -s 150 -w /tmp/s.wav "<text>" && sox /tmp/s.wav -r 16000 -b 16 -c 1 speech16k.wav rate -v

  python3 tests/gen_mel_ref.py ref DIR OUT
      On the reference machine (torch + transformers): computes input_features with transformers'
      WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, n_fft=400, hop_length=160), called as
      Qwen3OmniMoeProcessor calls it (padding=True, truncation=False, return_attention_mask=True), for every clip
      in DIR, plus padded batches, and writes OUT/mel_ref.bin (and OUT/mel_ideal.bin, float64 features for
      diagnosis, not committed). It also prints how far torch's float32 result is
      from an independent float64 computation, which bounds the agreement any implementation can reach.

mel_ref.bin: records of
    char name[32] (NUL-padded), int32 rows, int32 cols, int32 n_samples, int32 n_padded,
    float32 data[rows * cols] (row-major), int32 mask[cols]   (mask all 1 for the filter-bank record)
little-endian. Feature records have rows = 128 mel bins, cols = frames; their name is the clip's (DIR/<name>.wav),
or "batch:<clip>" for the first n_samples of that clip right-padded with zeros to n_padded inside a batch. The
record "mel_filters" holds feature_extractor.mel_filters as float32 [201][128].
"""
import math
import os
import struct
import sys
import wave

RATE = 16000

# name -> (seconds or sample count, generator(i) -> float in [-1, 1))
def clips():
    def sine440(i):
        return 0.5 * math.sin(2 * math.pi * 440.0 * i / RATE)

    def sines(i):
        t = i / RATE
        return 0.3 * math.sin(2 * math.pi * 300 * t) + 0.2 * math.sin(2 * math.pi * 2500 * t + 1.0) + \
            0.1 * math.sin(2 * math.pi * 7000 * t + 2.0)

    def chirp(i):  # linear sweep 50 Hz -> 7900 Hz over 3.7 s
        t = i / RATE
        f0, f1, T = 50.0, 7900.0, 3.7
        return 0.4 * math.sin(2 * math.pi * (f0 * t + 0.5 * (f1 - f0) / T * t * t))

    state = [12345]

    def noise(i):  # 32-bit LCG, uniform in [-0.3, 0.3)
        state[0] = (state[0] * 1664525 + 1013904223) & 0xFFFFFFFF
        return 0.6 * ((state[0] >> 8) / 16777216.0 - 0.5)

    def silence(i):
        return 0.0

    return [
        ("sine440_1s", 16000, sine440),
        ("sines_0p3s", 4800, sines),
        ("chirp_3p7s", 59200, chirp),
        ("noise_1s", 16000, noise),
        ("silence_0p3s", 4800, silence),
        ("noise_odd", 16077, noise),  # not a multiple of the hop: frames = floor(L / 160)
    ]


def write_wav16(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", max(-32768, min(32767, round(x * 32768)))) for x in samples))


def make_inputs(d):
    os.makedirs(d, exist_ok=True)
    for name, n, gen in clips():
        write_wav16(os.path.join(d, name + ".wav"), [gen(i) for i in range(n)])
        print("wrote", name, n)


def read_wav16(path):
    import numpy as np
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == RATE, path
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(32768.0)


def ideal_features(x, filters64):
    """float64 log-mel with the same definition, for judging torch's float32 rounding."""
    import numpy as np
    x = x.astype(np.float64)
    n_fft, hop = 400, 160
    win = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    xp = np.pad(x, n_fft // 2, mode="reflect")
    frames = 1 + (len(xp) - n_fft) // hop
    spec = np.stack([np.fft.rfft(xp[t * hop:t * hop + n_fft] * win) for t in range(frames)], axis=1)
    power = np.abs(spec[:, :-1]) ** 2
    mel = filters64.T @ power
    lg = np.log10(np.maximum(mel, 1e-10))
    lg = np.maximum(lg, lg.max() - 8.0)
    return (lg + 4.0) / 4.0


def record(f, name, data, n, n_padded, mask):
    import numpy as np
    data = np.ascontiguousarray(data, dtype="<f4")
    rows, cols = data.shape
    f.write(name.encode().ljust(32, b"\0"))
    f.write(struct.pack("<4i", rows, cols, n, n_padded))
    f.write(data.tobytes())
    f.write(np.ascontiguousarray(mask, dtype="<i4").tobytes())


def make_ref(d, out):
    import numpy as np
    import torch
    import transformers
    from transformers import WhisperFeatureExtractor
    from transformers.audio_utils import mel_filter_bank

    print("torch", torch.__version__, "transformers", transformers.__version__, "numpy", np.__version__)
    try:  # the processor's audio defaults that this script imitates
        from transformers.models.qwen3_omni_moe import processing_qwen3_omni_moe as pq
        print("Qwen3OmniMoeProcessorKwargs defaults:", pq.Qwen3OmniMoeProcessorKwargs._defaults)
    except Exception as ex:  # informative only
        print("could not read the processor defaults:", repr(ex))
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, n_fft=400, hop_length=160)
    kw = dict(sampling_rate=16000, padding=True, truncation=False, return_attention_mask=True, return_tensors="np")
    filters64 = mel_filter_bank(num_frequency_bins=201, num_mel_filters=128, min_frequency=0.0,
                                max_frequency=8000.0, sampling_rate=16000, norm="slaney", mel_scale="slaney")
    os.makedirs(out, exist_ok=True)
    names = [n for n, _, _ in clips()] + ["speech16k"]
    fi = open(os.path.join(out, "mel_ideal.bin"), "wb")  # float64 features as float32: diagnostics, not committed
    with open(os.path.join(out, "mel_ref.bin"), "wb") as f:
        filt = np.asarray(fe.mel_filters, dtype=np.float32)
        print("mel_filters", filt.shape, fe.mel_filters.dtype)
        record(f, "mel_filters", filt, 0, 0, np.ones(filt.shape[1], dtype=np.int32))
        wavs = {}
        for name in names:
            x = read_wav16(os.path.join(d, name + ".wav"))
            wavs[name] = x
            r = fe(x, **kw)
            feats = r["input_features"][0]
            mask = r["attention_mask"][0]
            try:
                ideal = ideal_features(x, filters64)
                record(fi, name, ideal, len(x), len(x), mask)
                dev = np.abs(feats.astype(np.float64) - ideal)
                devs = f"torch-vs-float64 max {float(dev.max()):.3g} mean {float(dev.mean()):.3g}"
            except Exception as ex:  # informative only
                devs = "float64 comparison failed: " + repr(ex)
            print(f"{name}: n={len(x)} features {feats.shape} mask ones {int(mask.sum())}/{len(mask)} {devs}")
            record(f, name, feats, len(x), len(x), mask)
        # a padded batch as the processor builds it: the shorter clip is right-padded with zeros to the longest
        a, b = wavs["sines_0p3s"], wavs["sine440_1s"]
        r = fe([a, b], **kw)
        feats, mask = r["input_features"], r["attention_mask"]
        single = fe(b, **kw)["input_features"][0]
        print("batch:", feats.shape, "mask ones", mask.sum(axis=1), "longest item == single:",
              float(np.abs(feats[1] - single).max()))
        record(f, "batch:sines_0p3s", feats[0], len(a), len(b), mask[0])
        # lengths that are not multiples of the hop pin down the mask rule (ceil for the padded item)
        sp, c = wavs["speech16k"][:4877], wavs["noise_odd"]
        r = fe([sp, c], **kw)
        print("batch odd:", r["input_features"].shape, "mask ones", r["attention_mask"].sum(axis=1))
        record(f, "batch:speech16k", r["input_features"][0], len(sp), len(c), r["attention_mask"][0])
    fi.close()
    print("wrote", os.path.join(out, "mel_ref.bin"), os.path.getsize(os.path.join(out, "mel_ref.bin")), "bytes")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "inputs":
        make_inputs(sys.argv[2] if len(sys.argv) > 2 else "tests/data/audio")
    elif len(sys.argv) == 4 and sys.argv[1] == "ref":
        make_ref(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
