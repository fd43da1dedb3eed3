#!/usr/bin/env python3
"""gen_vision_ref.py — reference data for the image/video preprocessing tests (tests/test_vision_*.c).

Runs on the reference machine (transformers 5.17, torch, torchvision, Pillow, numpy; no network) and writes:
  OUTDIR/img/*            the test images (only with --make-images; otherwise tests/data/vision/img is used)
  OUTDIR/ref/cases.txt    one line per image: decoded/resized sizes, grid, CRC-32s, sums of pixel_values
  OUTDIR/ref/*.dec.xz     decoded RGB (HWC uint8) as the processor's convert_to_rgb sees it (small/lossy/alpha only)
  OUTDIR/ref/*.rs.xz      the processor's resized RGB (HWC uint8), recovered exactly from pixel_values
  OUTDIR/ref/samples.txt  sampled pixel_values entries (case, flat index, value) to pin the patch order
  OUTDIR/ref/smart_resize.txt, resize_probe.txt + resize_probe.bin.xz, video.txt
  OUTDIR/sources.txt      the reference functions' source text (for reading, not committed)
  OUTDIR/info.txt         versions and findings

The reference is `Qwen2VLImageProcessor` as AutoImageProcessor builds it from tests/data/vision/preprocessor_config.json
(Qwen3-Omni's values: patch 16, temporal 2, merge 2, min/max pixels 3136/12845056, mean = std = 0.5), fed the PIL
image straight from Image.open (no load_image, so no EXIF transpose), like a caller that opens files itself.

Usage: PYTHONUNBUFFERED=1 python3 tests/gen_vision_ref.py OUTDIR [--make-images]
"""
import atexit
import inspect
import lzma
import math
import os
import sys
import time
import traceback
import zlib

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image

import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
CFG_DIR = os.path.join(HERE, "data", "vision")

out_dir = sys.argv[1]
make_images = "--make-images" in sys.argv
img_dir = os.path.join(out_dir, "img") if make_images else os.path.join(CFG_DIR, "img")
ref_dir = os.path.join(out_dir, "ref")
os.makedirs(ref_dir, exist_ok=True)
os.makedirs(img_dir, exist_ok=True)

info_lines = []


def info(*a):
    s = " ".join(str(x) for x in a)
    print(s)
    info_lines.append(s)


def crc(b: bytes) -> int:
    """CRC-32 (zlib's) of a byte string; the C tests compute the same."""
    return zlib.crc32(b) & 0xFFFFFFFF


def proc_image(h, w, seed):
    """Deterministic synthetic RGB image (HWC uint8); mirrored bit-for-bit by vision_test_pattern() in C."""
    y, x = np.mgrid[0:h, 0:w]
    x = x.astype(np.uint32)
    y = y.astype(np.uint32)
    out = np.empty((h, w, 3), np.uint8)
    for c in range(3):
        k = np.uint32(((c + 1) * 3266489917 + seed * 668265263) & 0xFFFFFFFF)
        hs = (x * np.uint32(2654435761)) ^ (y * np.uint32(2246822519)) ^ k
        hs ^= hs >> np.uint32(15)
        hs *= np.uint32(2246822519)
        hs ^= hs >> np.uint32(13)
        v = (x * np.uint32(3) + y * np.uint32(5) + np.uint32(c * 85) + ((x ^ y) & np.uint32(63)) + (hs & np.uint32(31)))
        out[..., c] = (v & np.uint32(255)).astype(np.uint8)
    return out


def content(h, w, seed, noise=2):
    """Photo-like test content: gradients, a disc and a box with hard edges, fine stripes, a little noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin(x / 7.0 + seed) * np.cos(y / 11.0)
    img = np.stack([r, g, b], -1)
    cy, cx, rad = h * 0.4, w * 0.6, min(h, w) * 0.3
    img[(y - cy) ** 2 + (x - cx) ** 2 < rad ** 2] = [220, 40, 60]
    img[int(h * 0.1):int(h * 0.3) + 1, int(w * 0.1):int(w * 0.35) + 1] = [20, 200, 90]
    band = slice(int(h * 0.7), int(h * 0.8) + 1)
    img[band, ::3, :] *= 0.3
    img = np.round(img) + rng.integers(-noise, noise + 1, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# versions and sources
info("python", sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__,
     "transformers", transformers.__version__, "PIL", PIL.__version__, "numpy", np.__version__)
info("cpu capability", torch.backends.cpu.get_cpu_capability(), "threads", torch.get_num_threads())
try:
    from PIL import features
    info("PIL libjpeg_turbo", features.version("libjpeg_turbo"), "webp", features.version("webp"),
         "zlib", features.version("zlib"), "libtiff", features.version("libtiff"))
except Exception as e:  # noqa: BLE001
    info("PIL features:", e)

src = []


def dump_src(label, obj):
    try:
        src.append(f"\n\n######## {label}\n" + inspect.getsource(obj))
    except Exception as e:  # noqa: BLE001
        src.append(f"\n\n######## {label}: {e}\n")


import transformers.image_transforms as it  # noqa: E402
import transformers.image_utils as iu  # noqa: E402
import transformers.models.qwen2_vl.image_processing_qwen2_vl as q2img  # noqa: E402
import torchvision.transforms.v2.functional._geometry as tvgeo  # noqa: E402

dump_src("image_transforms.convert_to_rgb", it.convert_to_rgb)
dump_src("image_utils.load_image", iu.load_image)
dump_src("qwen2_vl/image_processing_qwen2_vl.py", q2img)
try:
    import transformers.image_processing_backends as ipb
    dump_src("image_processing_backends.TorchvisionBackend", ipb.TorchvisionBackend)
except Exception as e:  # noqa: BLE001
    src.append(f"image_processing_backends: {e}")
try:
    import transformers.models.qwen2_vl.video_processing_qwen2_vl as q2vid
    dump_src("qwen2_vl/video_processing_qwen2_vl.py", q2vid)
except Exception as e:  # noqa: BLE001
    src.append(f"video_processing_qwen2_vl: {e}")
try:
    import transformers.video_processing_utils as vpu
    dump_src("video_processing_utils.BaseVideoProcessor", vpu.BaseVideoProcessor)
except Exception as e:  # noqa: BLE001
    src.append(f"video_processing_utils: {e}")
try:
    import transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe as q3p
    dump_src("qwen3_omni_moe/processing_qwen3_omni_moe.py", q3p)
except Exception as e:  # noqa: BLE001
    src.append(f"processing_qwen3_omni_moe: {e}")
dump_src("torchvision resize_image", tvgeo.resize_image)
dump_src("torchvision _do_native_uint8_resize_on_cpu", tvgeo._do_native_uint8_resize_on_cpu)
with open(os.path.join(out_dir, "sources.txt"), "w") as f:
    f.write("".join(src))

# ----------------------------------------------------------------------------------------------------------------
# the reference processor
from transformers import AutoImageProcessor  # noqa: E402

proc = AutoImageProcessor.from_pretrained(CFG_DIR)
info("AutoImageProcessor ->", type(proc).__module__, type(proc).__name__, "backend", getattr(proc, "backend", "?"))
info("proc size", proc.size, "patch", proc.patch_size, "temporal", proc.temporal_patch_size, "merge",
     proc.merge_size, "mean", proc.image_mean, "std", proc.image_std, "resample", proc.resample)
smart_resize = q2img.smart_resize

pil_proc = None
try:
    pil_proc = AutoImageProcessor.from_pretrained(CFG_DIR, backend="pil")
    info("pil backend processor:", type(pil_proc).__name__)
except Exception as e:  # noqa: BLE001
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        pil_proc = Qwen2VLImageProcessorPil(patch_size=16, temporal_patch_size=2, merge_size=2, min_pixels=3136,
                                            max_pixels=12845056, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        info("pil backend processor (direct):", type(pil_proc).__name__)
    except Exception as e2:  # noqa: BLE001
        info("no PIL backend processor:", e, e2)


def unpatchify(pv, grid, tps=2, ps=16, ms=2):
    """pixel_values [t*H*W, 3*tps*ps*ps] -> frames [t*tps, 3, H*ps, W*ps] (inverse of the processor's permute)."""
    gt, gh, gw = [int(v) for v in grid]
    a = pv.reshape(gt, gh // ms, gw // ms, ms, ms, 3, tps, ps, ps)
    # axes: 0 gt, 1 bh, 2 bw, 3 mh, 4 mw, 5 c, 6 t, 7 py, 8 px  ->  gt, t, c, bh, mh, py, bw, mw, px
    a = a.transpose(0, 6, 5, 1, 3, 7, 2, 4, 8)
    return a.reshape(gt * tps, 3, gh * ps, gw * ps)


def to_u8_exact(frames):
    """Recovers uint8 pixels from normalised values and checks that (u8 - 127.5f) / 127.5f reproduces them."""
    u8 = np.clip(np.rint(frames.astype(np.float64) * 127.5 + 127.5), 0, 255).astype(np.uint8)
    back = (u8.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    return u8, bool(np.array_equal(back, frames))


sample_lines = []
case_lines = []


def write_all():
    """Writes the text outputs; registered with atexit so an exception late in the run loses nothing."""
    with open(os.path.join(ref_dir, "cases.txt"), "w") as f:
        f.write("\n".join(case_lines) + "\n")
    with open(os.path.join(ref_dir, "samples.txt"), "w") as f:
        f.write("\n".join(sample_lines) + "\n")
    with open(os.path.join(out_dir, "info.txt"), "w") as f:
        f.write("\n".join(info_lines) + "\n")


atexit.register(write_all)
rng_samples = np.random.default_rng(99)


def record_case(name, kind, extra, pv, grid, rs_store, dec=None, dec_store=False):
    pv = np.asarray(pv, dtype=np.float32)
    frames = unpatchify(pv, grid)
    u8, exact = to_u8_exact(frames)
    same_t = bool(np.array_equal(u8[0::2], u8[1::2]))
    rs = np.ascontiguousarray(u8[0::2].transpose(0, 2, 3, 1))  # [t, H, W, 3] (one frame per temporal pair)
    rs_bytes = rs.tobytes() if kind != "video" else np.ascontiguousarray(u8.transpose(0, 2, 3, 1)).tobytes()
    fields = [f"name={name}", f"kind={kind}"] + extra
    fields += [f"gt={int(grid[0])}", f"gh={int(grid[1])}", f"gw={int(grid[2])}",
               f"rh={frames.shape[2]}", f"rw={frames.shape[3]}", f"rows={pv.shape[0]}",
               f"pv_sum={float(pv.astype(np.float64).sum())!r}",
               f"pv_sumsq={float((pv.astype(np.float64) ** 2).sum())!r}",
               f"rs_crc={crc(rs_bytes):08x}", f"exact={int(exact)}", f"same_t={int(same_t)}"]
    if dec is not None:
        fields.append(f"dec_crc={crc(dec.tobytes()):08x}")
        if dec_store:
            with open(os.path.join(ref_dir, name + ".dec.xz"), "wb") as f:
                f.write(lzma.compress(dec.tobytes(), preset=9))
            fields.append("dec=1")
    if rs_store:
        with open(os.path.join(ref_dir, name + ".rs.xz"), "wb") as f:
            f.write(lzma.compress(rs_bytes, preset=9))
        fields.append("rs=1")
    case_lines.append("case " + " ".join(fields))
    flat = pv.reshape(-1)
    idx = np.unique(np.concatenate([np.arange(min(48, flat.size)),
                                    rng_samples.integers(0, flat.size, size=min(200, flat.size))]))
    for i in idx.tolist():
        sample_lines.append(f"{name} {i} {float(flat[i])!r}")
    info(f"case {name}: grid {list(map(int, grid))} resized {frames.shape[2]}x{frames.shape[3]} exact={exact} "
         f"same_t={same_t}")


# ----------------------------------------------------------------------------------------------------------------
# test images (made here with PIL when --make-images; small, committed)
IMAGES = [
    # name, file, (h, w), how
    ("tiny_rgb", "tiny_rgb.png", (20, 30), "RGB"),
    ("wide_rgb", "wide_rgb.png", (40, 600), "RGB"),
    ("odd_rgb", "odd_rgb.png", (517, 333), "RGB"),
    ("tall_thin", "tall_thin.png", (1000, 5), "RGB"),
    ("one_px", "one_px.png", (1, 1), "RGB"),
    ("strip_1x200", "strip_1x200.png", (1, 200), "RGB"),
    ("strip_1x201", "strip_1x201.png", (1, 201), "RGB"),
    ("rgba", "rgba.png", (48, 64), "RGBA"),
    ("gray", "gray.png", (50, 77), "L"),
    ("gray_alpha", "gray_alpha.png", (33, 45), "LA"),
    ("pal", "pal.png", (30, 30), "P"),
    ("pal_trns", "pal_trns.png", (40, 40), "P+trns"),
    ("gray16", "gray16.png", (21, 34), "I;16"),
    ("photo", "photo.jpg", (150, 200), "JPEG"),
    ("gray_jpg", "gray.jpg", (60, 70), "JPEG-L"),
    ("prog_jpg", "prog.jpg", (90, 130), "JPEG-progressive"),
    ("anim_gif", "anim.gif", (36, 52), "GIF"),
    ("rgb_bmp", "rgb.bmp", (45, 61), "BMP"),
    ("rgb_tif", "rgb.tif", (30, 40), "TIFF"),
    ("lzw_tif", "lzw.tif", (31, 42), "TIFF-LZW"),
    ("lossless_webp", "lossless.webp", (40, 56), "WEBP-LL"),
    ("rgba_webp", "rgba.webp", (36, 44), "WEBPA-LL"),
    ("lossy_webp", "lossy.webp", (64, 80), "WEBP-LOSSY"),
    ("gray_trns", "gray_trns.png", (27, 35), "L+trns"),
    ("rgb_trns", "rgb_trns.png", (26, 38), "RGB+trns"),
    ("gif_screen", "gif_screen.gif", (30, 44), "GIF-screen"),
]


def make_image(fn, hw, how, seed):
    h, w = hw
    path = os.path.join(img_dir, fn)
    rgb = content(h, w, seed)
    if how == "RGB":
        Image.fromarray(rgb, "RGB").save(path)
    elif how == "RGBA":
        y, x = np.mgrid[0:h, 0:w]
        a = np.clip((x * 255) // max(w - 1, 1), 0, 255).astype(np.uint8)
        a[: h // 4] = 0          # fully transparent band
        a[h // 4: h // 2] = 255  # opaque band
        a[h // 2:, : w // 3] = 1  # nearly transparent corner
        Image.fromarray(np.dstack([rgb, a]), "RGBA").save(path)
    elif how == "L":
        Image.fromarray(rgb[..., 1], "L").save(path)
    elif how == "LA":
        y, x = np.mgrid[0:h, 0:w]
        a = ((x + y) * 255 // (h + w - 2)).astype(np.uint8)
        Image.fromarray(np.dstack([rgb[..., 0], a]), "LA").save(path)
    elif how == "P":
        Image.fromarray(rgb, "RGB").quantize(colors=16, dither=Image.Dither.NONE).save(path)
    elif how == "P+trns":
        p = Image.fromarray(rgb, "RGB").quantize(colors=8, dither=Image.Dither.NONE)
        p.info["transparency"] = bytes([0, 128, 255, 60, 255, 255, 200, 255])
        p.save(path, transparency=bytes([0, 128, 255, 60, 255, 255, 200, 255]))
    elif how == "I;16":
        y, x = np.mgrid[0:h, 0:w]
        v = ((x * 3000 + y * 1000) % 65536).astype(np.uint16)
        v[0, 0] = 100  # small values survive PIL's clip
        v[0, 1] = 255
        Image.fromarray(v, "I;16").save(path)
    elif how == "JPEG":
        Image.fromarray(rgb, "RGB").save(path, quality=90)
    elif how == "JPEG-L":
        Image.fromarray(rgb[..., 2], "L").save(path, quality=85)
    elif how == "JPEG-progressive":
        Image.fromarray(rgb, "RGB").save(path, quality=80, progressive=True, subsampling=1)  # 4:2:2
    elif how == "GIF":
        frames = [Image.fromarray(rgb, "RGB").quantize(colors=32, dither=Image.Dither.NONE),
                  Image.fromarray(rgb[::-1].copy(), "RGB").quantize(colors=32, dither=Image.Dither.NONE)]
        frames[0].save(path, save_all=True, append_images=frames[1:], transparency=3, duration=100, loop=0)
    elif how == "BMP":
        Image.fromarray(rgb, "RGB").save(path)
    elif how == "TIFF":
        Image.fromarray(rgb, "RGB").save(path)
    elif how == "TIFF-LZW":
        Image.fromarray(rgb, "RGB").save(path, compression="tiff_lzw")
    elif how == "WEBP-LL":
        Image.fromarray(rgb, "RGB").save(path, lossless=True)
    elif how == "WEBPA-LL":
        y, x = np.mgrid[0:h, 0:w]
        a = ((x * 7 + y * 3) % 256).astype(np.uint8)
        Image.fromarray(np.dstack([rgb, a]), "RGBA").save(path, lossless=True, exact=True)
    elif how == "WEBP-LOSSY":
        Image.fromarray(rgb, "RGB").save(path, quality=80)
    elif how == "L+trns":  # greyscale PNG with a tRNS chunk (SDL2_image 2.6 mis-decodes these)
        g = rgb[..., 1].copy()
        g[: h // 2, : w // 2] = 77
        Image.fromarray(g, "L").save(path, transparency=77)
    elif how == "RGB+trns":  # truecolour PNG with a tRNS colour key
        c = rgb.copy()
        c[h // 3:, w // 2:] = [10, 20, 30]
        Image.fromarray(c, "RGB").save(path, transparency=(10, 20, 30))
    elif how == "GIF-screen":  # first frame smaller than the logical screen: Pillow draws it on a bigger canvas
        p = Image.fromarray(rgb, "RGB").quantize(colors=16, dither=Image.Dither.NONE)
        p.save(path, transparency=5)
        b = bytearray(open(path, "rb").read())
        b[6:8] = (w + 9).to_bytes(2, "little")
        b[8:10] = (h + 7).to_bytes(2, "little")
        open(path, "wb").write(bytes(b))
    else:
        raise ValueError(how)


if make_images:
    for i, (name, fn, hw, how) in enumerate(IMAGES):
        make_image(fn, hw, how, seed=i + 1)

from transformers.image_transforms import convert_to_rgb  # noqa: E402

for name, fn, hw, how in IMAGES:
    path = os.path.join(img_dir, fn)
    try:
        im = Image.open(path)
        mode, (w, h) = im.mode, im.size
        extra = [f"file=img/{fn}", f"h={h}", f"w={w}", f"mode={mode.replace(';', '_')}",
                 f"fsize={os.path.getsize(path)}"]
        dec = np.asarray(convert_to_rgb(Image.open(path)).convert("RGB"))
        try:
            out = proc(images=Image.open(path), return_tensors="np")
        except Exception as e:  # noqa: BLE001
            msg = str(e).replace("\n", " ")
            case_lines.append(f"error name={name} file=img/{fn} h={h} w={w} msg={msg}")
            info(f"case {name}: processor error: {msg}")
            continue
        small = dec.size <= 40000 or how not in ("RGB",)
        g = out["image_grid_thw"][0]
        record_case(name, "file", extra, out["pixel_values"], g, rs_store=int(g[1]) * int(g[2]) * 768 <= 100000,
                    dec=dec, dec_store=small)
        # informational comparisons
        try:
            li = np.asarray(iu.load_image(path))
            info(f"  load_image(path) vs convert_to_rgb: max|d|={int(np.abs(li.astype(int) - dec.astype(int)).max())}"
                 f" (mode {mode})")
        except Exception as e:  # noqa: BLE001
            info("  load_image failed:", e)
        if pil_proc is not None:
            try:
                o2 = pil_proc(images=Image.open(path), return_tensors="np")["pixel_values"]
                d = np.abs(o2.astype(np.float64) - out["pixel_values"].astype(np.float64))
                info(f"  PIL backend vs torchvision backend: max|d|={d.max():.6g} mean|d|={d.mean():.6g}")
            except Exception as e:  # noqa: BLE001
                info("  PIL backend failed:", e)
    except Exception:  # noqa: BLE001
        info(f"case {name}: FAILED\n" + traceback.format_exc())

# procedural images fed as numpy HWC arrays (the large one is over max_pixels; not committed, regenerated in C)
for name, h, w, seed in [("proc_big", 3600, 4000, 1), ("proc_1024", 1024, 1024, 2), ("proc_mid", 700, 900, 3),
                         ("proc_small", 37, 41, 4)]:
    try:
        img = proc_image(h, w, seed)
        t0 = time.time()
        out = proc(images=img, return_tensors="np")
        dt = time.time() - t0
        extra = [f"h={h}", f"w={w}", f"seed={seed}", f"dec_crc={crc(img.tobytes()):08x}"]
        record_case(name, "proc", extra, out["pixel_values"], out["image_grid_thw"][0],
                    rs_store=(name == "proc_small"))
        info(f"  {name}: processor took {dt * 1000:.1f} ms on the reference CPU")
    except Exception:  # noqa: BLE001
        info(f"case {name}: FAILED\n" + traceback.format_exc())

# ----------------------------------------------------------------------------------------------------------------
# the resize kernel alone: torchvision uint8 bicubic antialias, many shapes (inputs regenerated with proc_image)
import torchvision.transforms.v2.functional as tvF  # noqa: E402
from torchvision.transforms import InterpolationMode  # noqa: E402

probe_cases = [(3, 300, 3, 7), (300, 3, 7, 3), (1, 64, 5, 64), (2, 2, 64, 64), (100, 90, 13, 11), (64, 64, 1, 1),
               (1, 1, 7, 9), (5, 5, 4, 6), (17, 33, 64, 31), (250, 17, 9, 40), (9, 250, 40, 9), (63, 64, 64, 63)]
prng = np.random.default_rng(7)
while len(probe_cases) < 60:
    ih, iw, oh, ow = [int(v) for v in prng.integers(1, 65, size=4)]
    if (ih, iw) != (oh, ow):
        probe_cases.append((ih, iw, oh, ow))
probe_bin = bytearray()
probe_lines = []
float_diff_total = 0
float_diff_max = 0
for i, (ih, iw, oh, ow) in enumerate(probe_cases):
    img = proc_image(ih, iw, 100 + i)
    o = None
    for layout in ("channels_last", "contiguous"):  # PIL input arrives channels-last, numpy input contiguous
        try:
            t = torch.from_numpy(img).permute(2, 0, 1)
            if layout == "contiguous":
                t = t.contiguous()
            r = tvF.resize(t, [oh, ow], interpolation=InterpolationMode.BICUBIC, antialias=True)
            if o is None:
                o, used = r, layout
            elif not torch.equal(o, r):
                info(f"  probe {i}: channels_last and contiguous results differ")
        except Exception as ex:  # noqa: BLE001  (torch asserts on some tiny shapes)
            info(f"  probe {i} {ih}x{iw}->{oh}x{ow} {layout}: torch error {str(ex).splitlines()[0][:120]}")
    if o is None:
        continue
    try:
        of = tvF.resize(torch.from_numpy(img).permute(2, 0, 1).contiguous().float(), [oh, ow],
                        interpolation=InterpolationMode.BICUBIC, antialias=True)
        fd = (of.clamp(0, 255).round().to(torch.uint8).int() - o.int()).abs()
        float_diff_total += int((fd > 0).sum())
        float_diff_max = max(float_diff_max, int(fd.max()))
    except Exception:  # noqa: BLE001
        pass
    ob = o.permute(1, 2, 0).contiguous().numpy().tobytes()
    probe_lines.append(f"probe {i} ih={ih} iw={iw} oh={oh} ow={ow} seed={100 + i} off={len(probe_bin)} "
                       f"crc={crc(ob):08x} layout={used}")
    probe_bin += ob
with open(os.path.join(ref_dir, "resize_probe.txt"), "w") as f:
    f.write("\n".join(probe_lines) + "\n")
with open(os.path.join(ref_dir, "resize_probe.bin.xz"), "wb") as f:
    f.write(lzma.compress(bytes(probe_bin), preset=9))
info(f"resize probe: {len(probe_cases)} cases; float32-path resize differs from the uint8 path in "
     f"{float_diff_total} values (max {float_diff_max}) -- the uint8 path is the one the processor takes")

# ----------------------------------------------------------------------------------------------------------------
# smart_resize over many (h, w) with the image and the video limits
sizes = [1, 2, 3, 5, 9, 10, 15, 16, 17, 31, 32, 33, 47, 48, 49, 63, 64, 79, 80, 81, 100, 111, 112, 113, 200, 333, 500,
         517, 1000, 1023, 1024, 1500, 2000, 3000, 3584, 3600, 4000, 5000, 8000, 10000, 20000, 100000]
pairs = [(a, b) for a in sizes for b in sizes]
srng = np.random.default_rng(5)
pairs += [tuple(int(v) for v in srng.integers(1, 9000, size=2)) for _ in range(600)]
sr_lines = []
try:
    sr_lines = []
    for (mn, mx) in [(3136, 12845056), (131072, 786432), (3136, 3136 * 4)]:
        for (h, w) in pairs:
            try:
                rh, rw = smart_resize(h, w, factor=32, min_pixels=mn, max_pixels=mx)
                sr_lines.append(f"{h} {w} {mn} {mx} {rh} {rw}")
            except ValueError:
                sr_lines.append(f"{h} {w} {mn} {mx} E E")
except Exception:  # noqa: BLE001
    info("smart_resize: FAILED\n" + traceback.format_exc())
with open(os.path.join(ref_dir, "smart_resize.txt"), "w") as f:
    f.write("\n".join(sr_lines) + "\n")
info(f"smart_resize: {len(sr_lines)} lines")

# ----------------------------------------------------------------------------------------------------------------
# video: Qwen2VLVideoProcessor with Qwen3-Omni's processor-level size override (131072 .. 786432 pixels per frame)
video_lines = []
try:
    from transformers import Qwen2VLVideoProcessor
    vp = Qwen2VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3,
                               image_std=[0.5] * 3)
    info("video processor:", type(vp).__name__, "size", vp.size, "do_sample_frames", vp.do_sample_frames)
    for vname, n, h, w, seed0 in [("video3", 3, 90, 160, 20), ("video4", 4, 300, 420, 30)]:
        frames = np.stack([proc_image(h, w, seed0 + k) for k in range(n)])
        vo = vp(videos=[frames], size={"shortest_edge": 128 * 32 * 32, "longest_edge": 768 * 32 * 32},
                return_tensors="np")
        pvv, grid = vo["pixel_values_videos"], vo["video_grid_thw"][0]
        record_case(vname, "video", [f"frames={n}", f"h={h}", f"w={w}", f"seed={seed0}"], pvv, grid,
                    rs_store=False)
        if vname == "video4":
            try:  # the optional per-frame cap, with a small token budget so that it bites
                vp_cap = Qwen2VLVideoProcessor(patch_size=16, temporal_patch_size=2, merge_size=2,
                                               image_mean=[0.5] * 3, image_std=[0.5] * 3)
                vp_cap.max_video_tokens = 300  # read from self in Qwen2VLVideoProcessor.resize
                vo3 = vp_cap(videos=[frames], size={"shortest_edge": 128 * 32 * 32, "longest_edge": 768 * 32 * 32},
                             cap_pixels_per_frame=True, return_tensors="np")
                record_case("video4_cap", "video", [f"frames={n}", f"h={h}", f"w={w}", f"seed={seed0}",
                                                    "cap=1", "max_video_tokens=300"],
                            vo3["pixel_values_videos"], vo3["video_grid_thw"][0], rs_store=False)
            except Exception as e:  # noqa: BLE001
                info(f"  video4_cap failed: {e}")
        try:
            vo2 = vp(videos=[frames], min_pixels=128 * 32 * 32, max_pixels=768 * 32 * 32, return_tensors="np")
            info(f"  {vname}: with min/max_pixels kwargs grid {vo2['video_grid_thw'][0].tolist()}")
        except Exception as e:  # noqa: BLE001
            info(f"  {vname}: min/max_pixels kwargs failed: {e}")
except Exception:  # noqa: BLE001
    info("video: FAILED\n" + traceback.format_exc())

print("done")
