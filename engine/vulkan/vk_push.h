/* vk_push.h — push-constant blocks of the Vulkan kernels, written once and read by both C and GLSL.
 *
 * C includes this file as is (each PUSH(...) becomes a typedef struct). A shader defines PC_<NAME> for the one block
 * it uses before `#include "vk_push.h"`; the GLSL compiler (which predefines VULKAN) then sees only that block, as
 * its `layout(push_constant)` uniform named `pc`. Fields are ordered 64-bit first, then 32-bit, so the std430
 * push-constant layout and the C layout agree; vk_ops.c checks every size with _Static_assert against the portable
 * 128-byte push-constant minimum.
 *
 * Addresses are buffer device addresses (VkDeviceAddress): the kernels read and write through GL_EXT_buffer_reference,
 * so no descriptor sets exist. Shapes are in elements, strides in elements. */
#ifndef OMNI_VK_PUSH_H
#define OMNI_VK_PUSH_H

#ifdef VULKAN
#define PUSH(name) layout(push_constant, std430) uniform name
#define PUSH_END(name) pc
#else
#include <stdint.h>
#define PUSH(name) typedef struct name
#define PUSH_END(name) name
#endif

/* Weight types as the kernels see them (same numbers as ob_dtype). */
#define VK_WT_F32 0
#define VK_WT_F16 1
#define VK_WT_BF16 2
#define VK_WT_Q8_0 3

/* matvec.comp: y[n][rows] (+)= x[n][cols] · Wᵀ for small n, and the two MoE decode kernels.
 * MODE 0 dense: w/s = weight and q8 scale addresses. MODE 1 (MoE gate+up): w = gate expert table, w2 = up table
 * (16 bytes per expert: data address, scale address), one workgroup row per (token, slot) entry, y = h[n*k][rows]
 * = silu(gate)·up. MODE 2 (MoE down): w = down table, x = h[n*k][cols], y[n][rows] += Σ_slot weight·down·h.
 * MODE 0 with the NORM constant (one x row): x is first RMS-normalised with weight w2 and eps; workgroup 0 writes
 * the normalised row to ids (reused as an fp32 address; 0 = nowhere). MODE 1 with the SEL constant: lg = the
 * router's logits, from which the kernel selects the experts itself and writes ids and wts (route_rank.glsl).
 * MODE 1 with SEL's fold bit (the folded router, vk_decode.c): x = the residual row (not yet normalised), nw = the
 * RMSNorm weight, lg = the router's two raw halves (Rw·x_old, then M·a), lo = where workgroup (0, 0) writes the
 * logits, xn = where it writes the normalised row. */
#if !defined(VULKAN) || defined(PC_MATVEC)
PUSH(ob_pc_matvec) {
    uint64_t w, s, w2, x, y, ids, wts, lg, nw, xn, lo;
    uint32_t rows, cols, n, k;
    uint32_t accumulate, x_stride, y_stride;
    float eps;
} PUSH_END(ob_pc_matvec);
#endif

/* route_fold.comp: the folded decode router's tables (vk_decode.c): rw[E][H] = r[e][i]·nw[i], m[E][HO] = rw · wo
 * (wo [H x HO], q8 scales at wos; r [E x H], q8 scales at rs) */
#if !defined(VULKAN) || defined(PC_FOLD)
PUSH(ob_pc_fold) {
    uint64_t wo, wos, r, rs, nw, rw, m;
    uint32_t E, H, HO, pad;
} PUSH_END(ob_pc_fold);
#endif

/* matmul.comp: tiled y[n][rows] (+)= x[n][cols] · Wᵀ. MODE 1 (grouped MoE): each workgroup row picks a tile of
 * the plan (expert, first sorted entry, count); x rows are gathered through tok[] when gather != 0, w is the table. */
#if !defined(VULKAN) || defined(PC_MATMUL)
PUSH(ob_pc_matmul) {
    uint64_t w, s, x, y, tiles, tok;
    uint32_t rows, cols, n, accumulate;
    uint32_t x_stride, y_stride, gather, pad;
} PUSH_END(ob_pc_matmul);
#endif

/* topk.comp: the OB_TOPK_K best (id, value) pairs of each OB_TOPK_CHUNK-element chunk of x[n] into dst */
#if !defined(VULKAN) || defined(PC_TOPK)
PUSH(ob_pc_topk) {
    uint64_t x, dst;
    uint32_t n, pad;
} PUSH_END(ob_pc_topk);
#endif

/* get_rows.comp: out[i][c] = table[ids[i]][c] */
#if !defined(VULKAN) || defined(PC_ROWS)
PUSH(ob_pc_rows) {
    uint64_t w, s, ids, dst;
    uint32_t rows, cols, n, pad;
} PUSH_END(ob_pc_rows);
#endif

/* rms_norm.comp: MODE 0: y[r] = x[r] / sqrt(mean(x[r]²) + eps) * w; MODE 1 (layer norm): y[r] = (x[r] - mean) /
 * sqrt(var + eps) * w + b (b, bs = bias data and scales; has_bias = 0 for none). MODE 0 with y16 != 0 (dim even):
 * y also as fp16 rows of dim halves there (the tensor-core GEMMs' activation copy, vk_x16_offer) */
#if !defined(VULKAN) || defined(PC_NORM)
PUSH(ob_pc_norm) {
    uint64_t x, w, s, y, b, bs, y16;
    uint32_t rows, dim;
    float eps;
    uint32_t has_bias;
} PUSH_END(ob_pc_norm);
#endif

/* rope.comp: rotate x[n][n_heads][head_dim] in place; pos = fp32 [3][n]; freqs = fp32 [rot_dim/2] */
#if !defined(VULKAN) || defined(PC_ROPE)
PUSH(ob_pc_rope) {
    uint64_t x, pos, freqs;
    uint32_t n, n_heads, head_dim, rot_dim;
    uint32_t sec0, sec1, sec2, interleaved;
} PUSH_END(ob_pc_rope);
#endif

/* kv_store.comp: cache[h][pos0 + i][d] = k[i][h*head_dim + d] (and v) */
#if !defined(VULKAN) || defined(PC_KV)
PUSH(ob_pc_kv) {
    uint64_t kc, vc, k, v;
    uint32_t n_ctx, pos0, n, n_kv, head_dim, pad;
} PUSH_END(ob_pc_kv);
#endif

/* attn_split.comp / attn_combine.comp / attn_flash.comp. part = fp32 scratch [n_heads][n][n_split][head_dim + 2]
 * (partial output, running max, running sum) for the split-K decode kernel; attn_flash_cm.comp: part != 0 = where
 * it writes the output's fp16 copy too */
#if !defined(VULKAN) || defined(PC_ATTN)
PUSH(ob_pc_attn) {
    uint64_t q, kc, vc, dst, part;
    uint32_t n_ctx, pos0, n, n_heads;
    uint32_t n_kv, head_dim, causal, window;
    float scale;
    uint32_t chunk, n_split, pad;
} PUSH_END(ob_pc_attn);
#endif

/* qk_rope_kv.comp: per head of q [n][n_heads][head_dim] and k [n][n_kv][head_dim]: RMSNorm with w_q / w_k (f32, f16
 * or bf16 vectors of head_dim), RoPE as rope.comp (pos fp32 [3][n], freqs fp32 [rot_dim/2]), both in place; k heads
 * then go to the k cache and v to the v cache at pos0 + i (caches [n_kv][n_ctx][head_dim]). k and v rows are
 * kv_stride floats apart. secs: the MRoPE sections and the interleaved flag, a byte each (sec0 | sec1 << 8 |
 * sec2 << 16 | interleaved << 24). nsplit > 0: k and v are the two halves of rows [n][kv_stride] of a product
 * still owed its split-K sum (vk_ksum_take): nsplit partial planes of n·kv_stride floats at part, summed in plane
 * order as mm_ksum.comp does (then written to k and v like the product's own output). 124 bytes. */
#if !defined(VULKAN) || defined(PC_QKROPE)
PUSH(ob_pc_qkrope) {
    uint64_t q, k, v, w_q, w_k, pos, freqs, kc, vc;
    uint32_t n, n_heads, n_kv, head_dim;
    uint32_t rot_dim, secs, n_ctx, pos0;
    float eps;
    uint32_t kv_stride;
    uint64_t part;
    uint32_t nsplit;
} PUSH_END(ob_pc_qkrope);
#endif

/* attn_decode.comp: the fused attention core of one decode step (vk_decode.c). Per kv head g (workgroup y) and key
 * chunk (workgroup x, chunk index chunk0 + x): q heads [g·G, (g+1)·G) of q [n_heads][head_dim] and k head g of k
 * [n_kv][head_dim] RMS-normalised with w_q / w_k and rotated (pos fp32 [3][1], freqs fp32 [rot_dim/2]); the chunk
 * that holds position pos0 stores k and v ([n_kv][head_dim]) into the caches ([n_kv][n_ctx][head_dim]); softmax
 * attention of the query at pos0 into dst [n_heads][head_dim]. With several chunks, partials go to part
 * ([n_kv][n_chunks][G·head_dim] outputs, then [n_kv][n_chunks][G] (max, sum) pairs) and the last workgroup of a kv
 * head (counted in cnt[g], reset to 0 by that workgroup) merges them. Head shapes and the rope layout are
 * specialization constants. */
#if !defined(VULKAN) || defined(PC_ATTND)
PUSH(ob_pc_attnd) {
    uint64_t q, k, v, w_q, w_k, pos, freqs, kc, vc, dst, part, cnt;
    uint32_t n_ctx, pos0, n_sets, window; /* n_sets: kv heads x head sets per kv head (the grid's y) */
    uint32_t chunk0, n_chunks;
    float eps, scale;
} PUSH_END(ob_pc_attnd);
/* the attn_decode_prof build (OMNI_VK_ATTN_PROF=1, vk_decode.c) finds its records ATTND_PROF_BYTES before pc.part:
 * an append counter, then records of 32 words from byte 128 (the push constants have no room for one more address) */
#define ATTND_PROF_BYTES 4194304u
#define ATTND_PROF_CAP ((ATTND_PROF_BYTES - 128u) / 128u)
#endif

/* moe_route.comp: softmax, top-k (ties -> lower index), optional renormalisation */
#if !defined(VULKAN) || defined(PC_ROUTE)
PUSH(ob_pc_route) {
    uint64_t logits, ids, wts;
    uint32_t n, n_exp, k, norm;
    uint64_t part;   /* nsplit != 0 (the subgroup form only): the logits are the sum of nsplit planes [n][n_exp] here */
    uint32_t nsplit, pad;
    /* PLAN (the subgroup form only): moe_plan.comp's plan of these ids made too (plan: its layout, tile and max_tiles
     * as there; cnt: 1 + n_exp zeroed counters, left at zero) */
    uint64_t plan, cnt;
    uint32_t tile, max_tiles;
} PUSH_END(ob_pc_route);
#endif

/* router.comp (decode): xn = rms_norm(x, nw), logits = xn · Wᵀ (w/s = weight and q8 scales), then the top-k of
 * moe_route into ids/wts; counter = a zeroed uint the kernel uses to find its last workgroup. */
#if !defined(VULKAN) || defined(PC_ROUTER)
PUSH(ob_pc_router) {
    uint64_t x, nw, w, s, xn, logits, ids, wts, counter;
    uint32_t rows, cols, k, renorm;
    float eps;
} PUSH_END(ob_pc_router);
#endif

/* router.comp built with -DCHAIN (router_chain): o_proj + residual (x[cols] += ao[o_cols] · Woᵀ, wo = weight
 * address, its q8 scales at wo + o_soff) chained in front of the router in one dispatch (shaders/chain.glsl); the
 * router's fields as ob_pc_router; cnt = two zeroed chain counters. 128 bytes: the portable push-constant limit. */
#if !defined(VULKAN) || defined(PC_ROUTERCHAIN)
PUSH(ob_pc_routerchain) {
    uint64_t x, nw, w, s, xn, logits, ids, wts, counter, wo, ao, cnt;
    uint32_t rows, cols, k, renorm;
    float eps;
    uint32_t o_cols, o_soff, pad;
} PUSH_END(ob_pc_routerchain);
#endif

/* moe_plan.comp: groups the n*k (token, slot) entries by expert. plan = int32 scratch laid out as
 * [tok: n*k][pos: n*k][n_tiles: 1][tiles: 3 * max_tiles] (see vk_moe.c). */
#if !defined(VULKAN) || defined(PC_PLAN)
PUSH(ob_pc_plan) {
    uint64_t ids, plan;
    uint32_t n, k, n_exp, tile;
    uint32_t max_tiles, pad;
} PUSH_END(ob_pc_plan);
#endif

/* moe_combine.comp: y[i][c] += Σ_slot wts[i][slot] · d[pos[i*k + slot]][c] */
#if !defined(VULKAN) || defined(PC_COMBINE)
PUSH(ob_pc_combine) {
    uint64_t d, pos, wts, y;
    uint32_t n, k, dim, pad;
} PUSH_END(ob_pc_combine);
#endif

/* ew.comp: OP 0 add: b[i] += a[i]; 1 swiglu: dst[i] = silu(a[i]) * b[i]; 2 add_bias: b[i] += bias[i % dim] (a is
 * the bias, any weight type, dst its q8 scale address); 3 gelu (erf): dst[i] = gelu(a[i]); 4 gelu (tanh). count
 * elements, groups_x = the x size of the 2-D grid. */
#if !defined(VULKAN) || defined(PC_EW)
PUSH(ob_pc_ew) {
    uint64_t a, b, dst;
    uint32_t count, groups_x, dim, pad;
} PUSH_END(ob_pc_ew);
#endif

/* gather.comp: MODE 0 permute: dst[i0][i1][i2][i3] (shape d) = src[Σ i·s]; MODE 1 im2col over [B][C][H][W] with
 * element strides s = (b, c, y, x): dst[(b·Ho + oy)·Wo + ox][(c·k + ky)·k + kx]; MODE 2 add_rows: dst[idx[i]][:] +=
 * src[i][:] for i < d[0] rows of d[1]. */
#if !defined(VULKAN) || defined(PC_GATHER)
PUSH(ob_pc_gather) {
    uint64_t src, dst, idx;
    uint32_t d[4];
    uint32_t s[4];
    uint32_t C, H, W, k;
    uint32_t stride, pad, Ho, Wo;
    uint32_t count, groups_x;
} PUSH_END(ob_pc_gather);
#endif

/* gridbar.comp (vk_timing.c, the grid-barrier micro-benchmark): phases of n16 16-byte words read from region
 * (p0 + p) mod n_reg at buf, a grid barrier on the counter at cnt after each when bar != 0 */
#if !defined(VULKAN) || defined(PC_GRIDBAR)
PUSH(ob_pc_gridbar) {
    uint64_t cnt, buf, sink;
    uint32_t phases, p0, n16, n_reg, bar, key;
} PUSH_END(ob_pc_gridbar);
#endif

#endif
