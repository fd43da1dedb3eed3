#!/usr/bin/env python3
"""gen_fixtures.py — builds the tiny random-weight reference checkpoints in tests/fixtures/*.tar.xz.

Runs where the reference stack lives (transformers 5.17, torch 2.11; no network, no GPU needed):

    PYTHONUNBUFFERED=1 python3 tests/gen_fixtures.py --out DIR [--work DIR2] [--only NAME ...]

For every fixture it builds the model in fp32 from a seeded config, re-draws every weight with a seeded generator
(see `randomize`), casts to bf16 and calls `save_pretrained` (bf16 safetensors with the per-expert tensor names of
the real checkpoints), rewrites config.json into the rope style the fixture is meant to exercise, then RELOADS the
folder in fp32 with eager attention (and eager experts) and computes every reference from that reloaded model — so
a reference is fp32 math on exactly the bf16 values stored in model.safetensors. Each fixture folder
(config.json, generation_config.json, model.safetensors, inputs.safetensors, reference.safetensors, meta.json) is
packed as DIR/<name>.tar.xz with its files at the archive root (deterministic tar: sorted names, mtime 0).

Fixtures: qwen3-dense, qwen3-dense-tied, qwen3-moe, qwen3-omni. tests/fixtures/README.md lists every tensor.
"""
import argparse
import copy
import inspect
import io
import json
import lzma
import math
import os
import shutil
import sys
import tarfile
import time
import traceback

import torch

N_GEN = 8  # greedy continuation length stored as `generated`
INIT_NOTE = ("weights re-drawn after construction (seeded): matrices N(0, 1/fan_in), token/codec embeddings N(0, s^2) "
             "with s = 1 (0.25 for tied embeddings), norm weights 1 + N(0, 0.2^2), biases N(0, 0.1^2), SnakeBeta "
             "alpha/beta N(0, 0.2^2), layer scales 0.1 + N(0, 0.05^2)")
LOG = []


def log(*a):
    s = " ".join(str(x) for x in a)
    LOG.append(s)
    print(s, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# weights, files, configs


def randomize(model, seed, embed_std=1.0):
    """Re-draws every parameter from a seeded generator so the fixtures exercise every term of the math.

    The library init (normal std 0.02, ones for norms, zeros for biases and SnakeBeta log-parameters) would leave
    biases and norm weights trivial and make attention without q/k-norm (audio, vision) almost uniform, so a
    port could get those wrong and still match. Instead: matrices ~ N(0, 1/fan_in) (unit-variance outputs),
    token/codec embeddings ~ N(0, 1), norm weights 1 + N(0, 0.2²), biases N(0, 0.1²), SnakeBeta alpha/beta
    N(0, 0.2²), layer scales 0.1 + N(0, 0.05²). A tied model gets embed_std 0.25: with unit-variance tied embeddings
    the final state stays close to the current token's own embedding and greedy decoding just repeats it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim <= 1:
                if leaf == "bias":
                    v = 0.1 * r
                elif leaf in ("alpha", "beta"):
                    v = 0.2 * r
                elif leaf in ("scale", "gamma"):
                    v = 0.1 + 0.05 * r
                else:
                    v = 1.0 + 0.2 * r
            elif name.endswith("embed_tokens.weight") or "codec_embedding" in name or "code_embedding" in name:
                v = embed_std * r
            elif name.endswith("pos_embed.weight"):
                v = 0.5 * r
            else:
                fan_in = p.shape[-1] if ("experts" in name and p.ndim == 3) else math.prod(p.shape[1:])
                v = r / math.sqrt(fan_in)
            p.copy_(v.to(p.dtype))


def read_st_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def save_st(path, tensors, note):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path, metadata={"note": note})


def bf16_exact(x):
    """Rounds fp32 inputs to bf16-representable values (still fp32): halves their compressed size and loses nothing
    a test needs."""
    return x.to(torch.bfloat16).to(torch.float32)


def rope_style(cfg):
    if "rope_parameters" in cfg:
        return "rope_parameters"
    if "rope_theta" in cfg:
        return "rope_theta+rope_scaling"
    return "none"


def to_old_rope_style(d, path=""):
    """Rewrites a config into the pre-v5 style of the published checkpoints: every `rope_parameters` dict becomes a
    top-level `rope_theta` plus `rope_scaling` (null for plain RoPE; for MRoPE the remaining keys plus "type"), and
    `num_local_experts` (what transformers 5 writes through its attribute_map) is spelled `num_experts` again."""
    if not isinstance(d, dict):
        return d
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = to_old_rope_style(v, path + "." + k)
        elif k == "num_local_experts":
            out["num_experts"] = v
        else:
            out[k] = v
    if "rope_parameters" in out:
        rp = dict(out.pop("rope_parameters") or {})
        if path.endswith("vision_config") or path.endswith("audio_config"):
            return out  # the published vision/audio configs carry no rope keys at all
        theta = rp.pop("rope_theta", None)
        rtype = rp.get("rope_type", rp.get("type", "default"))
        extra = {k: v for k, v in rp.items() if k not in ("rope_type", "type")}
        if theta is not None:
            out["rope_theta"] = int(theta) if float(theta).is_integer() else theta
        if extra or rtype != "default":
            sc = dict(extra)
            sc["rope_type"] = rtype
            sc["type"] = rtype
            out["rope_scaling"] = dict(sorted(sc.items()))
        else:
            out["rope_scaling"] = None
    return dict(sorted(out.items()))


def to_new_rope_style(d):
    """The v5 style: `rope_parameters` {rope_type, rope_theta, ...}; no top-level rope_theta/rope_scaling."""
    out = dict(d)
    if "rope_parameters" not in out:
        theta = out.pop("rope_theta", 1e6)
        sc = out.pop("rope_scaling", None) or {}
        rp = {k: v for k, v in sc.items() if k != "type"}
        rp.setdefault("rope_type", sc.get("type", "default"))
        rp["rope_theta"] = float(theta)
        out["rope_parameters"] = rp
    else:
        out.pop("rope_theta", None)
        out.pop("rope_scaling", None)
    return dict(sorted(out.items()))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def pack(folder, tar_path):
    """Deterministic .tar.xz with the folder's files at the archive root."""
    names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    with tarfile.open(tar_path, "w:xz", preset=9 | lzma.PRESET_EXTREME, format=tarfile.GNU_FORMAT) as tf:
        for n in names:
            p = os.path.join(folder, n)
            ti = tarfile.TarInfo(n)
            ti.size = os.path.getsize(p)
            ti.mtime = 0
            ti.mode = 0o644
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            with open(p, "rb") as f:
                tf.addfile(ti, f)
    return os.path.getsize(tar_path)


def xz_size(b):
    return len(lzma.compress(b, preset=9 | lzma.PRESET_EXTREME))


def size_report(folder):
    for n in sorted(os.listdir(folder)):
        p = os.path.join(folder, n)
        with open(p, "rb") as f:
            b = f.read()
        log(f"    {n}: {len(b)} bytes, xz {xz_size(b)}")


def tensor_table(tensors):
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")} for k, v in tensors.items()}


def check_reload_exact(ref_model, src_model, what):
    """Every weight of the fp32 reload must equal the bf16 model's value: catches keys that failed to load and were
    silently re-initialised."""
    a = src_model.state_dict()
    b = ref_model.state_dict()
    bad = []
    for k, v in a.items():
        if k not in b:
            bad.append(("missing", k))
        elif not torch.equal(v.float(), b[k].float()):
            bad.append(("differs", k))
    extra = [k for k in b if k not in a]
    log(f"  reload check ({what}): {len(a)} tensors, {len(bad)} bad, {len(extra)} extra in reload")
    for x in bad[:10]:
        log("    ", x)
    if bad:
        raise RuntimeError(f"{what}: reloaded weights differ from the saved bf16 model")


def load(cls, folder, dtype, experts, config=None):
    kw = dict(dtype=dtype, attn_implementation="eager")
    if experts:
        kw["experts_implementation"] = "eager"
    if config is not None:
        kw["config"] = config
    try:
        m = cls.from_pretrained(folder, **kw)
    except TypeError as e:  # older/newer API without experts_implementation
        log("  from_pretrained:", e, "- retrying without experts_implementation")
        kw.pop("experts_implementation", None)
        m = cls.from_pretrained(folder, **kw)
        if experts and hasattr(m, "set_experts_implementation"):
            m.set_experts_implementation("eager")
    m.eval()
    return m


def impl_report(model):
    seen = {}
    for name, mod in model.named_modules():
        cfg = getattr(mod, "config", None)
        if cfg is None:
            continue
        key = type(cfg).__name__
        if key in seen:
            continue
        seen[key] = (getattr(cfg, "_attn_implementation", None), getattr(cfg, "_experts_implementation", None))
    for k, v in seen.items():
        log(f"    {k}: attn={v[0]} experts={v[1]}")
    return {k: {"attn": v[0], "experts": v[1]} for k, v in seen.items()}


def ones(ids):
    """The attention mask the processor would give. Every forward passes one: with attention_mask=None and no cache,
    transformers 5 reads position ids whose steps are not 1 (MRoPE positions of image tokens) as packed sequences
    and splits the causal mask there (masking_utils._preprocess_mask_arguments / find_packed_sequence_indices)."""
    return torch.ones_like(ids)


def greedy_generate(model, n, **inputs):
    """model.generate(do_sample=False, max_new_tokens=n) with EOS disabled; returns only the new ids."""
    from transformers import GenerationConfig

    gc = copy.deepcopy(getattr(model, "generation_config", None) or GenerationConfig())
    gc.do_sample = False
    gc.max_new_tokens = n
    gc.min_new_tokens = None
    gc.eos_token_id = None
    gc.pad_token_id = 0
    for k in ("temperature", "top_p", "top_k"):
        if hasattr(gc, k):
            setattr(gc, k, None)
    with torch.no_grad():
        out = model.generate(**inputs, generation_config=gc)
    seq = out.sequences if hasattr(out, "sequences") else out
    return seq[0, inputs["input_ids"].shape[1]:].clone()


def greedy_manual(forward_logits, ids, n):
    """Greedy continuation by full recomputation (no cache): the plain-argmax definition `generated` must match."""
    cur = ids.clone()
    new = []
    for _ in range(n):
        with torch.no_grad():
            nxt = int(forward_logits(cur)[-1].argmax())
        new.append(nxt)
        cur = torch.cat([cur, torch.tensor([[nxt]])], dim=1)
    return torch.tensor(new, dtype=torch.int64)


def margin_top2(logits):
    """Smallest gap between the best and second-best logit over rows (how far greedy is from a tie)."""
    t = logits.topk(2, dim=-1).values
    return float((t[..., 0] - t[..., 1]).min())


def greedy_margin(forward_logits, ids, gen):
    """Smallest top-2 logit gap over the positions whose argmax produced `generated`."""
    full = torch.cat([ids, gen[None, :-1]], dim=1)
    with torch.no_grad():
        lg = forward_logits(full).float()
    return margin_top2(lg[ids.shape[1] - 1:])


def router_gap(model, k, run):
    """Smallest gap between the k-th and (k+1)-th router probability over every token and MoE layer seen while
    `run()` executes (mlp.gate modules under `model`): how close top-k routing came to a tie."""
    gates = [(n, m) for n, m in model.named_modules() if n.endswith("mlp.gate") and hasattr(m, "weight")]
    xs = {}
    hooks = [m.register_forward_pre_hook(
        lambda mod, args, n=n: xs.setdefault(n, []).append(args[0].detach().reshape(-1, args[0].shape[-1]).float()))
        for n, m in gates]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    gaps = []
    for n, m in gates:
        for x in xs.get(n, []):
            pr = torch.softmax(x @ m.weight.float().t(), dim=-1).sort(dim=-1, descending=True).values
            gaps.append(float((pr[:, k - 1] - pr[:, k]).min()))
    return min(gaps) if gaps else None


def versions():
    import transformers

    return {"transformers": transformers.__version__, "torch": torch.__version__, "python": sys.version.split()[0]}


# ---------------------------------------------------------------------------------------------------------------
# Qwen3 / Qwen3-MoE text models


def text_fixture(name, cfg_cls, model_cls, cfg_kwargs, seed, style, work, experts, description, embed_std=1.0):
    folder = os.path.join(work, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    torch.manual_seed(seed)
    cfg = cfg_cls(**cfg_kwargs)
    model = model_cls(cfg)
    randomize(model, seed + 1, embed_std)
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder)
    cfg_path = os.path.join(folder, "config.json")
    with open(cfg_path) as f:
        saved = json.load(f)
    native = rope_style(saved)
    log(f"  save_pretrained wrote rope style: {native}")
    if style == "old":
        written = to_old_rope_style(saved)
    elif style == "new":
        written = to_new_rope_style(saved)
    else:
        written = saved
    write_json(cfg_path, written)
    log(f"  config.json rope style now: {rope_style(written)}")
    if not os.path.exists(os.path.join(folder, "generation_config.json")):
        log("  no generation_config.json written; writing a minimal one")
        write_json(os.path.join(folder, "generation_config.json"),
                   {"bos_token_id": cfg_kwargs.get("bos_token_id"), "eos_token_id": cfg_kwargs.get("eos_token_id")})
    keys = sorted(read_st_header(os.path.join(folder, "model.safetensors")).keys() - {"__metadata__"})
    log(f"  model.safetensors: {len(keys)} tensors, e.g. {[k for k in keys if 'layers.0.' in k][:12]}")

    ref = load(model_cls, folder, torch.float32, experts)
    impls = impl_report(ref)
    check_reload_exact(ref, model, name)

    g = torch.Generator().manual_seed(seed + 2)
    T = 12
    ids = torch.randint(0, cfg_kwargs["vocab_size"], (1, T), generator=g, dtype=torch.int64)
    with torch.no_grad():
        logits = ref(input_ids=ids, attention_mask=ones(ids), use_cache=False).logits[0].float()
    gen = greedy_generate(ref, N_GEN, input_ids=ids, attention_mask=torch.ones_like(ids))
    man = greedy_manual(lambda x: ref(input_ids=x, attention_mask=ones(x), use_cache=False).logits[0], ids, N_GEN)
    log(f"  generated {gen.tolist()} manual {man.tolist()} match={torch.equal(gen, man)}")
    gmargin = greedy_margin(lambda x: ref(input_ids=x, attention_mask=ones(x), use_cache=False).logits[0], ids, gen)
    rgap = None
    if experts:
        with torch.no_grad():
            rgap = router_gap(ref, cfg_kwargs["num_experts_per_tok"], lambda: ref(input_ids=ids, attention_mask=ones(ids), use_cache=False))
    log(f"  greedy top-2 margin min {gmargin}, router top-k gap min {rgap}")

    # what the bf16 model (same eager kernels) gives, for the record
    bf = load(model_cls, folder, torch.bfloat16, experts)
    with torch.no_grad():
        lb = bf(input_ids=ids, attention_mask=ones(ids), use_cache=False).logits[0].float()
    d = (lb - logits).abs()
    tol = {"bf16_vs_fp32_max_abs": float(d.max()), "bf16_vs_fp32_mean_abs": float(d.mean()),
           "logits_abs_max": float(logits.abs().max()), "top2_margin_min": margin_top2(logits),
           "greedy_top2_margin_min": gmargin, "router_topk_prob_gap_min": rgap}
    log(f"  bf16 vs fp32 logits: {tol}")

    # the same weights under the other config style must give the same numbers
    other = to_new_rope_style(saved) if rope_style(written) != "rope_parameters" else to_old_rope_style(saved)
    same_other = None
    try:
        alt = os.path.join(work, name + ".altcfg")
        shutil.rmtree(alt, ignore_errors=True)
        shutil.copytree(folder, alt)
        write_json(os.path.join(alt, "config.json"), other)
        m2 = load(model_cls, alt, torch.float32, experts)
        with torch.no_grad():
            l2 = m2(input_ids=ids, attention_mask=ones(ids), use_cache=False).logits[0].float()
        same_other = bool(torch.equal(l2, logits))
        log(f"  other rope style ({rope_style(other)}) gives identical logits: {same_other}")
        shutil.rmtree(alt, ignore_errors=True)
    except Exception as e:
        log("  other-style check failed:", repr(e))

    inputs = {"input_ids": ids}
    refs = {"logits": logits.contiguous(), "generated": gen.to(torch.int64)}
    save_st(os.path.join(folder, "inputs.safetensors"), inputs, f"{name} inputs")
    save_st(os.path.join(folder, "reference.safetensors"), refs, f"{name} fp32 eager reference")
    meta = {
        "fixture": name, "description": description, "model_class": model_cls.__name__, "versions": versions(),
        "seed": seed, "init": INIT_NOTE,
        "config_rope_style": rope_style(written), "save_pretrained_rope_style": native,
        "other_rope_style_identical_logits": same_other,
        "reference": "fp32 reload of the bf16 model.safetensors, attn_implementation=eager"
                     + (", experts_implementation=eager" if experts else ""),
        "implementations": impls,
        "generated": {"n": N_GEN, "how": "generate(do_sample=False, max_new_tokens=8) with eos_token_id=None",
                      "equals_argmax_recompute": bool(torch.equal(gen, man))},
        "observed": tol,
        "inputs": tensor_table(inputs), "reference_tensors": tensor_table(refs),
    }
    write_json(os.path.join(folder, "meta.json"), meta)
    return folder


def build_qwen3_dense(work):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    kw = dict(vocab_size=4096, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=32, hidden_act="silu", max_position_embeddings=512,
              rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=True,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
              bos_token_id=4094, eos_token_id=4095)
    return text_fixture("qwen3-dense", Qwen3Config, Qwen3ForCausalLM, kw, 1000, "native", work, False,
                        "Qwen3ForCausalLM: vocab 4096, hidden 64, 3 layers, 4 heads / 2 kv heads, head_dim 32 "
                        "(q width 128 != hidden), intermediate 96, untied lm_head, attention_bias true "
                        "(q/k/v/o biases), rope theta 1e6, config.json as save_pretrained writes it")


def build_qwen3_dense_tied(work):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    kw = dict(vocab_size=4096, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, hidden_act="silu", max_position_embeddings=512,
              rms_norm_eps=1e-6, tie_word_embeddings=True, attention_bias=False,
              rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
              bos_token_id=4094, eos_token_id=4095)
    return text_fixture("qwen3-dense-tied", Qwen3Config, Qwen3ForCausalLM, kw, 2000, "new", work, False,
                        "Qwen3ForCausalLM: vocab 4096, hidden 48, 2 layers, 4 heads / 2 kv heads, head_dim 16, "
                        "intermediate 96, tied embeddings (no lm_head.weight in the file), no attention bias, "
                        "config.json in the newer rope_parameters style", embed_std=0.25)


def build_qwen3_moe(work):
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    kw = dict(vocab_size=4096, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, hidden_act="silu", max_position_embeddings=512,
              rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False, num_experts=8,
              num_experts_per_tok=3, moe_intermediate_size=32, norm_topk_prob=True, decoder_sparse_step=1,
              mlp_only_layers=[1], rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
              bos_token_id=4094, eos_token_id=4095)
    return text_fixture("qwen3-moe", Qwen3MoeConfig, Qwen3MoeForCausalLM, kw, 3000, "old", work, True,
                        "Qwen3MoeForCausalLM: vocab 4096, hidden 64, 3 layers, 4 heads / 2 kv heads, head_dim 16, "
                        "8 experts top-3 (moe_intermediate 32, norm_topk_prob true), layer 1 dense "
                        "(mlp_only_layers [1], intermediate 96), config.json in the older rope_theta + "
                        "rope_scaling:null style")


# ---------------------------------------------------------------------------------------------------------------
# Qwen3-Omni


def omni_config_dict():
    """The published Qwen3-Omni-30B-A3B-Instruct config with every id written explicitly and only the sizes
    shrunk (docs: qwen3-omni-architecture.md §1.2, §9). The talker side (talker, code predictor, code2wav) runs
    at hidden 16 because its codec tables (3072, 3 x 2 x 2048 and 4 x 2048 rows) dominate the file size."""
    text = dict(vocab_size=152064, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, hidden_act="silu", max_position_embeddings=65536,
                rms_norm_eps=1e-6, attention_bias=False, sliding_window=None, decoder_sparse_step=1,
                moe_intermediate_size=32, num_experts=8, num_experts_per_tok=3, norm_topk_prob=True,
                mlp_only_layers=[], shared_expert_intermediate_size=0, router_aux_loss_coef=0.001,
                tie_word_embeddings=False,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 2, 2],
                                 "interleaved": True, "mrope_interleaved": True})
    audio = dict(num_mel_bins=128, d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                 activation_function="gelu", downsample_hidden_size=16, output_dim=32, n_window=50,
                 n_window_infer=200, conv_chunksize=500, max_source_positions=1500, scale_embedding=False)
    vision = dict(depth=4, hidden_size=32, num_heads=2, intermediate_size=64, hidden_act="gelu_pytorch_tanh",
                  patch_size=16, temporal_patch_size=2, spatial_merge_size=2, in_channels=3, out_hidden_size=32,
                  num_position_embeddings=64, deepstack_visual_indexes=[1, 2, 3],
                  image_size=768, spatial_patch_size=16, in_chans=3, tokens_per_second=2,
                  apply_vit_abs_pos_embed=True)
    thinker = dict(text_config=text, audio_config=audio, vision_config=vision, audio_token_id=151675,
                   audio_start_token_id=151669, audio_end_token_id=151670, image_token_id=151655,
                   video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
                   user_token_id=872, position_id_per_seconds=13, seconds_per_chunk=2, tie_word_embeddings=False)
    talker_text = dict(vocab_size=3072, hidden_size=16, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16, hidden_act="silu",
                       num_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
                       shared_expert_intermediate_size=24, norm_topk_prob=True, rms_norm_eps=1e-6,
                       max_position_embeddings=65536, decoder_sparse_step=1, mlp_only_layers=[],
                       sliding_window=None,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 2, 2],
                                        "interleaved": True})
    predictor = dict(vocab_size=2048, hidden_size=16, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, head_dim=16, hidden_act="silu",
                     num_code_groups=4, rms_norm_eps=1e-6, max_position_embeddings=32768,
                     layer_types=["full_attention", "full_attention"],
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
    talker = dict(text_config=talker_text, code_predictor_config=predictor, accept_hidden_layer=2,
                  thinker_hidden_size=32, num_code_groups=4, codec_pad_id=2148, codec_bos_id=2149,
                  codec_eos_token_id=2150, codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157,
                  speaker_id={"chelsie": 2301, "ethan": 2302, "aiden": 2303}, audio_token_id=151675,
                  audio_start_token_id=151669, audio_end_token_id=151670, image_token_id=151655,
                  video_token_id=151656, vision_start_token_id=151652, position_id_per_seconds=13,
                  seconds_per_chunk=2, spatial_merge_size=2)
    code2wav = dict(codebook_size=2048, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=2, intermediate_size=48, hidden_act="silu", sliding_window=8,
                    rms_norm_eps=1e-5, layer_scale_initial_scale=0.01, decoder_dim=64, upsample_rates=[8, 5, 4, 3],
                    upsampling_ratios=[2, 2], max_position_embeddings=8000, num_quantizers=4,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    return dict(architectures=["Qwen3OmniMoeForConditionalGeneration"], model_type="qwen3_omni_moe",
                thinker_config=thinker, talker_config=talker, code2wav_config=code2wav, enable_audio_output=True,
                im_start_token_id=151644, im_end_token_id=151645, tts_pad_token_id=151671, tts_bos_token_id=151672,
                tts_eos_token_id=151673, system_token_id=8948, user_token_id=872, assistant_token_id=77091)


def audio_tokens(frames):
    """_get_feat_extract_output_lengths (modeling_qwen3_omni_moe.py): tokens of one audio of `frames` mel frames."""
    r = frames % 100
    f = (r - 1) // 2 + 1
    return ((f - 1) // 2 + 1 - 1) // 2 + 1 + 13 * (frames // 100)


class PreHook:
    """Records the keyword arguments of every call of a module (the thinker's text model gets inputs_embeds after
    the audio/image features were scattered in, the position ids and the deepstack features)."""

    def __init__(self, module):
        self.calls = []
        self.h = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, mod, args, kwargs):
        rec = {}
        for k, v in kwargs.items():
            if torch.is_tensor(v):
                rec[k] = v.detach().clone()
            elif isinstance(v, (list, tuple)) and v and all(torch.is_tensor(t) for t in v):
                rec[k] = [t.detach().clone() for t in v]
            else:
                rec[k] = v
        rec["_nargs"] = len(args)
        if args and torch.is_tensor(args[0]):
            rec["_arg0"] = args[0].detach().clone()
        self.calls.append(rec)

    def close(self):
        self.h.remove()


def pos3(p):
    """[3 or 4, 1, T] position ids -> [3, T] int64 (5.17 prepends a plain text row in some paths)."""
    p = p[:, 0] if p.ndim == 3 else p
    if p.shape[0] == 4:
        p = p[1:]
    assert torch.equal(p, p.round()), "fractional positions"
    return p.to(torch.int64)


def build_qwen3_omni(work):
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration as Omni

    name = "qwen3-omni"
    seed = 4000
    folder = os.path.join(work, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    torch.manual_seed(seed)
    cd = omni_config_dict()
    cd.pop("model_type")  # a class attribute, not a constructor argument
    cfg = Qwen3OmniMoeConfig(**cd)
    model = Omni(cfg)
    randomize(model, seed + 1)
    # Only ids 0..4095 and 151643..152063 stay live in the thinker's token tables: the rest are zero so the
    # 152064-row tables (and every logits row) compress to almost nothing. Prompts use live ids only.
    live = torch.zeros(152064, dtype=torch.bool)
    live[:4096] = True
    live[151643:] = True
    with torch.no_grad():
        model.thinker.model.embed_tokens.weight[~live] = 0
        model.thinker.lm_head.weight[~live] = 0
    n_params = sum(p.numel() for p in model.parameters())
    log(f"  omni params: {n_params}")
    for pre in ("thinker.model", "thinker.lm_head", "thinker.audio_tower", "thinker.visual", "talker.model",
                "talker.code_predictor", "talker.codec_head", "talker.text_projection", "talker.hidden_projection",
                "code2wav"):
        ps = [p for n, p in model.named_parameters() if n.startswith(pre + ".") or n == pre]
        b = b"".join(p.detach().to(torch.bfloat16).view(torch.int16).numpy().tobytes() for p in ps)
        log(f"    {pre}: {sum(p.numel() for p in ps)} params, bf16 xz {xz_size(b) if b else 0} bytes")
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder)
    cfg_path = os.path.join(folder, "config.json")
    with open(cfg_path) as f:
        saved = json.load(f)
    log(f"  save_pretrained text_config rope style: {rope_style(saved['thinker_config']['text_config'])}")
    write_json(os.path.join(folder, "config.rope_parameters.json"), saved)
    old = to_old_rope_style(saved)
    write_json(cfg_path, old)
    log("  config.json text_config (old style): rope_theta=%s rope_scaling=%s" % (
        old["thinker_config"]["text_config"].get("rope_theta"), old["thinker_config"]["text_config"].get("rope_scaling")))
    keys = sorted(read_st_header(os.path.join(folder, "model.safetensors")).keys() - {"__metadata__"})
    log(f"  model.safetensors: {len(keys)} tensors; experts example: "
        f"{[k for k in keys if 'thinker.model.layers.0.mlp' in k][:6]}")

    ref = load(Omni, folder, torch.float32, True)
    impls = impl_report(ref)
    check_reload_exact(ref, model, name)
    del model
    th = ref.thinker

    g = torch.Generator().manual_seed(seed + 2)

    def rid(n):
        return torch.randint(0, 4096, (n,), generator=g).tolist()

    IM_S, IM_E, NL, USER, ASSIST = 151644, 151645, 198, 872, 77091
    AU_S, AU_E, AU_P = 151669, 151670, 151675
    VI_S, VI_E, IM_P = 151652, 151653, 151655
    head = [IM_S, USER, NL]
    tail = [IM_E, NL, IM_S, ASSIST, NL]

    inputs, refs, notes = {}, {}, {}
    cap = PreHook(th.model)

    def forward(ids, **mm):
        cap.calls.clear()
        with torch.no_grad():
            out = th(input_ids=ids, attention_mask=ones(ids), use_cache=False, **mm)
        call = cap.calls[0]
        return out.logits[0].float(), call

    # ---- a. text prompt
    ids = torch.tensor([head + rid(4) + tail], dtype=torch.int64)
    inputs["input_ids"] = ids
    logits, call = forward(ids)
    log(f"  text-model call kwargs: {sorted(k for k in call if not k.startswith('_'))} nargs={call['_nargs']}")
    refs["logits"] = logits
    refs["generated"] = greedy_generate(th, N_GEN, input_ids=ids, attention_mask=torch.ones_like(ids))
    man = greedy_manual(lambda x: th(input_ids=x, attention_mask=ones(x), use_cache=False).logits[0], ids, N_GEN)
    log(f"  generated {refs['generated'].tolist()} manual {man.tolist()}")
    notes["generated_equals_argmax_recompute"] = bool(torch.equal(refs["generated"], man))
    notes["greedy_top2_margin_min"] = greedy_margin(lambda x: th(input_ids=x, attention_mask=ones(x), use_cache=False).logits[0], ids,
                                                    refs["generated"])
    with torch.no_grad():
        notes["router_topk_prob_gap_min_text"] = router_gap(th, 3, lambda: th(input_ids=ids, attention_mask=ones(ids), use_cache=False))
    log(f"  greedy margin {notes['greedy_top2_margin_min']}, router gap {notes['router_topk_prob_gap_min_text']}")

    def get_embeds(call):
        e = call.get("inputs_embeds")
        if e is None:
            e = call.get("_arg0")
        return e[0]

    def get_deepstack(call):
        for k, v in call.items():
            if "deepstack" in k and isinstance(v, list):
                return v
        return None

    def check_positions(call, ids, T, **kw):
        p = call.get("position_ids")
        if p is None:
            return None
        p = pos3(p)
        try:
            sig = inspect.signature(th.get_rope_index).parameters
            args = {k: v for k, v in kw.items() if k in sig}
            r = th.get_rope_index(ids, attention_mask=torch.ones_like(ids), **args)
            r = pos3(r[0] if isinstance(r, tuple) else r)
            log(f"    get_rope_index equals forward's position ids: {torch.equal(r, p)}")
        except Exception as e:
            log("    get_rope_index call failed:", repr(e))
        assert p.shape == (3, T)
        return p

    # ---- b. audio
    for frames in (70, 200, 560):
        feats = bf16_exact(torch.randn(1, 128, frames, generator=g) * 0.5)
        mask = torch.ones(1, frames, dtype=torch.int64)
        inputs[f"input_features_{frames}"] = feats
        inputs[f"feature_attention_mask_{frames}"] = mask
        L = audio_tokens(frames)
        aids = torch.tensor([head + [AU_S] + [AU_P] * L + [AU_E] + rid(2) + tail], dtype=torch.int64)
        lg, call = forward(aids, input_features=feats, feature_attention_mask=mask)
        emb = get_embeds(call)[aids[0] == AU_P]
        assert emb.shape == (L, 32), emb.shape
        refs[f"audio_embeds_{frames}"] = emb.contiguous()
        try:
            with torch.no_grad():
                direct = th.get_audio_features(feats, feature_attention_mask=mask)
            d = direct.last_hidden_state if hasattr(direct, "last_hidden_state") else direct
            d = d[0] if isinstance(d, (tuple, list)) else d
            log(f"    audio {frames}: {L} tokens; get_audio_features -> {type(direct).__name__}, "
                f"equals embeds: {torch.equal(d.reshape(emb.shape).float(), emb)}")
        except Exception as e:
            log(f"    audio {frames}: get_audio_features failed: {e!r}")
        if frames == 200:
            inputs["audio_input_ids"] = aids
            refs["audio_logits"] = lg
            refs["audio_position_ids"] = check_positions(call, aids, aids.shape[1],
                                                         audio_seqlens=mask.sum(-1))

    # ---- c. images (grids in patches: t x H x W; 4 patches merge into one token)
    def image(grid):
        t, h, w = grid
        return bf16_exact(torch.rand(t * h * w, 1536, generator=g) * 2 - 1), torch.tensor([grid], dtype=torch.int64)

    pv1, gr1 = image((1, 4, 6))
    pv2, gr2 = image((1, 6, 4))
    inputs.update(pixel_values_1=pv1, image_grid_thw_1=gr1, pixel_values_2=pv2, image_grid_thw_2=gr2)
    n1, n2 = 6, 6
    img1 = [VI_S] + [IM_P] * n1 + [VI_E]
    img2 = [VI_S] + [IM_P] * n2 + [VI_E]

    iids = torch.tensor([head + img1 + rid(2) + tail], dtype=torch.int64)
    lg, call = forward(iids, pixel_values=pv1, image_grid_thw=gr1)
    with torch.no_grad():
        notes["router_topk_prob_gap_min_image"] = router_gap(
            th, 3, lambda: th(input_ids=iids, attention_mask=ones(iids), pixel_values=pv1, image_grid_thw=gr1, use_cache=False))
    log(f"    image prompt router gap {notes['router_topk_prob_gap_min_image']}")
    inputs["image_input_ids"] = iids
    refs["image_logits"] = lg
    refs["image_embeds_1"] = get_embeds(call)[iids[0] == IM_P].contiguous()
    ds = get_deepstack(call)
    for j, t in enumerate(ds or []):
        refs[f"deepstack_1_{j}"] = t.reshape(-1, t.shape[-1]).float().contiguous()
    refs["image_position_ids"] = check_positions(call, iids, iids.shape[1], image_grid_thw=gr1)

    i2 = torch.tensor([head + img1 + img2 + rid(1) + tail], dtype=torch.int64)
    lg, call = forward(i2, pixel_values=torch.cat([pv1, pv2]), image_grid_thw=torch.cat([gr1, gr2]))
    inputs["image2_input_ids"] = i2
    refs["image2_logits"] = lg
    e2 = get_embeds(call)[i2[0] == IM_P]
    refs["image_embeds_2"] = e2[n1:].contiguous()
    log(f"    two-image prompt: first image's embeds equal the single-image run: "
        f"{torch.equal(e2[:n1], refs['image_embeds_1'])}")
    ds = get_deepstack(call)
    for j, t in enumerate(ds or []):
        refs[f"deepstack_2_{j}"] = t.reshape(-1, t.shape[-1])[n1:].float().contiguous()
    refs["image2_position_ids"] = check_positions(call, i2, i2.shape[1], image_grid_thw=torch.cat([gr1, gr2]))

    L200 = audio_tokens(200)
    mx = torch.tensor([head + [AU_S] + [AU_P] * L200 + [AU_E] + img1 + rid(1) + tail], dtype=torch.int64)
    f200, m200 = inputs["input_features_200"], inputs["feature_attention_mask_200"]
    lg, call = forward(mx, input_features=f200, feature_attention_mask=m200, pixel_values=pv1, image_grid_thw=gr1)
    inputs["mixed_input_ids"] = mx
    refs["mixed_logits"] = lg
    refs["mixed_position_ids"] = check_positions(call, mx, mx.shape[1], image_grid_thw=gr1,
                                                 audio_seqlens=m200.sum(-1))
    cap.close()
    for k in [k for k, v in refs.items() if v is None]:
        del refs[k]

    # ---- d. talker + code2wav on the text prompt
    try:
        got = {}
        c2w = ref.code2wav
        orig = c2w.chunked_decode

        def chunked(codes, *a, **k):
            got["codes"] = codes.detach().clone()
            return orig(codes, *a, **k)

        c2w.chunked_decode = chunked
        tcap = PreHook(ref.talker.model)
        with torch.no_grad():
            out = ref.generate(input_ids=ids, attention_mask=torch.ones_like(ids), return_audio=True,
                               thinker_do_sample=False, talker_do_sample=False, thinker_max_new_tokens=8,
                               talker_max_new_tokens=8)
        tcap.close()
        c2w.chunked_decode = orig
        seqs, wav = out if isinstance(out, tuple) else (out, None)
        seqs = seqs.sequences if hasattr(seqs, "sequences") else seqs
        log(f"    talker generate: thinker ids {seqs[0, ids.shape[1]:].tolist()}, wav "
            f"{None if wav is None else tuple(wav.shape)}, codes {None if 'codes' not in got else tuple(got['codes'].shape)}")
        if "codes" in got and wav is not None:
            refs["talker_codes"] = got["codes"][0].to(torch.int64).contiguous()
            refs["wav"] = wav.reshape(-1).float().contiguous()
            refs["talker_thinker_ids"] = seqs[0].to(torch.int64).contiguous()
            first = tcap.calls[0] if tcap.calls else {}
            if torch.is_tensor(first.get("inputs_embeds")):
                refs["talker_prefill_embeds"] = first["inputs_embeds"][0].float().contiguous()
            with torch.no_grad():
                direct = c2w(got["codes"])
            direct = direct if torch.is_tensor(direct) else direct[0]
            log(f"    code2wav(codes) equals generate's wav: {torch.equal(direct.reshape(-1).float(), refs['wav'])}")
            notes["talker"] = ("generate(return_audio=True, thinker_do_sample=False, talker_do_sample=False, "
                               "thinker_max_new_tokens=8, talker_max_new_tokens=8), speaker default (Ethan), "
                               "talker defaults otherwise (repetition_penalty 1.05, suppress codec ids 2048..3071 "
                               "except 2150, thinker eos 151645)")
    except Exception as e:
        log("    talker/code2wav skipped:", repr(e))
        traceback.print_exc()
        notes["talker"] = f"skipped: {e!r}"

    # ---- the published-style config and the v5 style must give the same numbers
    log(f"  loaded (config.json) thinker rope: {th.config.text_config.rope_parameters}, "
        f"talker rope: {ref.talker.config.text_config.rope_parameters}")
    try:
        altdir = os.path.join(work, name + ".altcfg")
        shutil.rmtree(altdir, ignore_errors=True)
        shutil.copytree(folder, altdir)
        shutil.copy(os.path.join(folder, "config.rope_parameters.json"), os.path.join(altdir, "config.json"))
        m2 = load(Omni, altdir, torch.float32, True)
        log(f"  loaded (config.rope_parameters.json) thinker rope: {m2.thinker.config.text_config.rope_parameters}")
        impl_report(m2)
        diffs = {}
        with torch.no_grad():
            for key, ids_, mm in (("logits", ids, {}), ("image_logits", iids, dict(pixel_values=pv1, image_grid_thw=gr1)),
                                  ("mixed_logits", mx, dict(input_features=f200, feature_attention_mask=m200,
                                                           pixel_values=pv1, image_grid_thw=gr1))):
                a = m2.thinker(input_ids=ids_, attention_mask=ones(ids_), use_cache=False, **mm).logits[0].float()
                diffs[key] = float((a - refs[key]).abs().max())
        notes["config_rope_parameters_max_abs_diff"] = diffs
        log(f"  config.rope_parameters.json vs config.json, max |diff| of logits: {diffs}")
        del m2
        shutil.rmtree(altdir, ignore_errors=True)
    except Exception as e:
        log("  new-style config check failed:", repr(e))

    # ---- bf16 model, for the record
    try:
        bf = load(Omni, folder, torch.bfloat16, True)
        obs = {}
        with torch.no_grad():
            for key, ids_, mm in (("logits", ids, {}),
                                  ("audio_logits", inputs["audio_input_ids"],
                                   dict(input_features=f200, feature_attention_mask=m200)),
                                  ("image_logits", iids, dict(pixel_values=pv1, image_grid_thw=gr1))):
                lb = bf.thinker(input_ids=ids_, attention_mask=ones(ids_), use_cache=False, **mm).logits[0].float()
                obs[key] = {"bf16_vs_fp32_max_abs": float((lb - refs[key]).abs().max()),
                            "logits_abs_max": float(refs[key].abs().max()),
                            "top2_margin_min": margin_top2(refs[key][:, live])}
        notes["observed"] = obs
        log(f"  bf16 vs fp32: {obs}")
        del bf
    except Exception as e:
        log("  bf16 comparison failed:", repr(e))

    save_st(os.path.join(folder, "inputs.safetensors"), inputs, "qwen3-omni inputs")
    save_st(os.path.join(folder, "reference.safetensors"), refs, "qwen3-omni fp32 eager reference")
    meta = {
        "fixture": name, "model_class": "Qwen3OmniMoeForConditionalGeneration", "versions": versions(),
        "seed": seed, "init": INIT_NOTE,
        "live_token_ids": "thinker embed_tokens / lm_head rows outside 0..4095 and 151643..152063 are zero",
        "config_rope_style": "config.json: rope_theta + rope_scaling (published style); "
                             "config.rope_parameters.json: the same config as transformers 5 writes it",
        "reference": "fp32 reload of the bf16 model.safetensors, attn_implementation=eager, "
                     "experts_implementation=eager; thinker forward with attention_mask=ones, use_cache=False",
        "implementations": impls,
        "prompts": {
            "input_ids": "<|im_start|>user\\n + 4 ids + <|im_end|>\\n<|im_start|>assistant\\n",
            "audio_input_ids": "... <|audio_start|> + 26 x <|audio_pad|> (input_features_200) + <|audio_end|> + 2 ids ...",
            "image_input_ids": "... <|vision_start|> + 6 x <|image_pad|> (pixel_values_1, grid 1x4x6) + <|vision_end|> + 2 ids ...",
            "image2_input_ids": "... image 1 (grid 1x4x6) then image 2 (pixel_values_2, grid 1x6x4) + 1 id ...",
            "mixed_input_ids": "... audio (input_features_200, 26 tokens) then image 1 + 1 id ...",
        },
        "audio_embeds": "rows of the thinker's inputs_embeds at <|audio_pad|> when that audio is alone in a prompt",
        "deepstack_I_J": "deepstack feature J (added after thinker layer J) for image I's tokens",
        "notes": notes,
        "inputs": tensor_table(inputs), "reference_tensors": tensor_table(refs),
    }
    write_json(os.path.join(folder, "meta.json"), meta)
    return folder


BUILDERS = {
    "qwen3-dense": build_qwen3_dense,
    "qwen3-dense-tied": build_qwen3_dense_tied,
    "qwen3-moe": build_qwen3_moe,
    "qwen3-omni": build_qwen3_omni,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="where the <name>.tar.xz files go")
    ap.add_argument("--work", help="where the fixture folders are built (default: OUT)")
    ap.add_argument("--only", nargs="*", help="fixture names (default: all)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    work = a.work or a.out
    os.makedirs(a.out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    log("versions:", versions())
    failed = []
    for name in a.only or list(BUILDERS):
        t0 = time.time()
        log(f"== {name}")
        try:
            folder = BUILDERS[name](work)
            size_report(folder)
            n = pack(folder, os.path.join(a.out, name + ".tar.xz"))
            log(f"  {name}.tar.xz: {n} bytes ({time.time() - t0:.1f} s)")
        except Exception as e:
            traceback.print_exc()
            log(f"  FAILED {name}: {e!r}")
            failed.append(name)
    log("failed:", failed if failed else "none")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
