/* test_cpu_ops.c — every CPU back-end op against a plain double-precision loop written from the reference
 * formulas, on random inputs over odd shapes (one row, sizes not multiple of the vector width, large K).
 * Tolerances: 2e-5 relative for fp32 accumulations, exact for data movement. */
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "harness.h"
#include "util.h"

static ob_backend *B;

static ob_ptr buf_from(const void *data, size_t bytes) {
    ob_buf *b = B->ops->alloc(B, bytes);
    if (data) B->ops->upload(B, b, 0, data, bytes);
    return (ob_ptr){ b, 0 };
}
static void *host(ob_ptr p) { return (char *)B->ops->host_ptr(B, p.buf) + p.off; }
static void rnd(float *x, size_t n, uint64_t seed, float scale) {
    omni_rng r = { seed };
    for (size_t i = 0; i < n; i++) x[i] = (omni_rng_uniform(&r) * 2 - 1) * scale;
}
static double rel_err(const float *a, const double *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs(a[i] - b[i]));
        den = fmax(den, fabs(b[i]));
    }
    return num / (den > 0 ? den : 1);
}

static void setup(void) {
    if (!B) B = ob_cpu_new(2);
}

TEST(cpu_matmul_all_dtypes) {
    setup();
    int shapes[][3] = { { 1, 1, 8 }, { 3, 5, 17 }, { 1, 64, 2048 }, { 7, 33, 96 }, { 5, 4, 4100 }, { 9, 3, 32 } };
    ob_dtype types[] = { OB_F32, OB_F16, OB_BF16, OB_Q8_0 };
    for (unsigned si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (unsigned ti = 0; ti < 4; ti++) {
            int n = shapes[si][0], R = shapes[si][1], K = shapes[si][2];
            ob_dtype t = types[ti];
            if (t == OB_Q8_0 && K % 32) continue;
            float *w = malloc(sizeof(float) * R * K), *x = malloc(sizeof(float) * n * K);
            rnd(w, (size_t)R * K, 1 + si, 1.0f);
            rnd(x, (size_t)n * K, 100 + si, 1.0f);
            size_t wb = ob_dtype_bytes(t, (int64_t)R * K);
            void *wq = malloc(wb);
            ob_weights_from_f32(w, t, R, K, wq); /* the reference uses the values as the dtype stores them */
            float *wd = malloc(sizeof(float) * R * K);
            for (int r = 0; r < R; r++) ob_row_to_f32(wq, t, R, K, r, wd + (size_t)r * K);
            double *ref = malloc(sizeof(double) * n * R);
            for (int i = 0; i < n; i++)
                for (int r = 0; r < R; r++) {
                    double s = 0.5; /* accumulate onto an existing value */
                    for (int k = 0; k < K; k++) s += (double)wd[(size_t)r * K + k] * x[(size_t)i * K + k];
                    ref[(size_t)i * R + r] = s;
                }
            ob_mat m = ob_mat_make(buf_from(wq, wb), t, R, K);
            ob_ptr xp = buf_from(x, sizeof(float) * n * K), yp = buf_from(NULL, sizeof(float) * n * R);
            for (int i = 0; i < n * R; i++) ((float *)host(yp))[i] = 0.5f;
            B->ops->matmul(B, &m, xp, yp, n, 1);
            double e = rel_err(host(yp), ref, (size_t)n * R);
            if (e > 2e-5) th_fail(__FILE__, __LINE__, "matmul %s n=%d R=%d K=%d rel err %g", ob_dtype_name(t), n, R, K, e);
            B->ops->buf_free(B, m.data.buf), B->ops->buf_free(B, xp.buf), B->ops->buf_free(B, yp.buf);
            free(w), free(x), free(wq), free(wd), free(ref);
        }
}

TEST(cpu_q8_0_quantization_error) {
    /* blocks of 32 with an fp16 scale: error per value <= scale/2 (+ fp16 rounding of the scale) */
    float x[64], back[64];
    rnd(x, 64, 7, 3.0f);
    uint8_t q[64 + 4];
    ob_quantize_q8_0(x, 1, 64, q);
    ob_row_to_f32(q, OB_Q8_0, 1, 64, 0, back);
    for (int b = 0; b < 2; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        for (int i = 0; i < 32; i++) CHECK_NEAR(back[b * 32 + i], x[b * 32 + i], amax / 127 * 0.51 + amax * 1e-3);
    }
}

TEST(cpu_rms_norm_rows_and_heads) {
    setup();
    int rows = 7, dim = 33;
    float x[7 * 33], w[33];
    rnd(x, sizeof x / 4, 3, 2.0f);
    rnd(w, 33, 4, 1.0f);
    ob_ptr xp = buf_from(x, sizeof x), yp = buf_from(NULL, sizeof x);
    ob_mat wm = ob_mat_make(buf_from(w, sizeof w), OB_F32, 1, dim);
    B->ops->rms_norm(B, xp, &wm, yp, rows, dim, 1e-6f);
    double ref[7 * 33];
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)x[r * dim + i] * x[r * dim + i];
        double inv = 1 / sqrt(ss / dim + 1e-6);
        for (int i = 0; i < dim; i++) ref[r * dim + i] = x[r * dim + i] * inv * w[i];
    }
    CHECK(rel_err(host(yp), ref, sizeof x / 4) < 2e-6);
    B->ops->rms_norm(B, xp, &wm, xp, rows, dim, 1e-6f); /* in place */
    CHECK(rel_err(host(xp), ref, sizeof x / 4) < 2e-6);
}

/* Reference MRoPE following Qwen3OmniMoe's apply_interleaved_mrope + rotate_half. */
static void rope_ref(double *v, const float *pos3, int n, int t, int heads, int D, float theta, const int *sec, int inter) {
    for (int h = 0; h < heads; h++) {
        double *x = v + ((size_t)t * heads + h) * D;
        double out[256];
        for (int i = 0; i < D / 2; i++) {
            int row = 0;
            if (sec[0] + sec[1] + sec[2]) {
                if (inter) row = (i % 3 == 1 && i < 3 * sec[1]) ? 1 : (i % 3 == 2 && i < 3 * sec[2]) ? 2 : 0;
                else row = i < sec[0] ? 0 : i < sec[0] + sec[1] ? 1 : 2;
            }
            double inv = 1.0 / pow(theta, 2.0 * i / D);
            double a = pos3[row * n + t] * inv;
            out[i] = x[i] * cos(a) - x[i + D / 2] * sin(a);
            out[i + D / 2] = x[i + D / 2] * cos(a) + x[i] * sin(a);
        }
        memcpy(x, out, sizeof(double) * D);
    }
}

TEST(cpu_rope_plain_and_mrope) {
    setup();
    int n = 5, heads = 3, D = 16;
    int secs[3][3] = { { 0, 0, 0 }, { 4, 2, 2 }, { 2, 3, 3 } };
    for (int c = 0; c < 3; c++)
        for (int inter = 0; inter < 2; inter++) {
            float x[5 * 3 * 16], pos3[15];
            rnd(x, sizeof x / 4, 11 + c, 1.0f);
            for (int t = 0; t < n; t++) pos3[t] = (float)(t * 7 + 3), pos3[n + t] = (float)(t + 1), pos3[2 * n + t] = (float)(2 * t);
            double ref[5 * 3 * 16];
            for (int i = 0; i < n * heads * D; i++) ref[i] = x[i];
            for (int t = 0; t < n; t++) rope_ref(ref, pos3, n, t, heads, D, 1e6f, secs[c], inter);
            ob_ptr xp = buf_from(x, sizeof x), pp = buf_from(pos3, sizeof pos3);
            ob_rope r = { 1e6f, D, D, { secs[c][0], secs[c][1], secs[c][2] }, inter, 0 };
            B->ops->rope(B, xp, pp, n, heads, &r);
            double e = rel_err(host(xp), ref, sizeof x / 4);
            if (e > 1e-5) th_fail(__FILE__, __LINE__, "rope case %d interleaved %d: rel err %g", c, inter, e);
        }
}

TEST(cpu_attention_causal_gqa_window) {
    setup();
    int Hq = 4, Hkv = 2, D = 8, n_ctx = 16, pos0 = 3, n = 6;
    for (int window = 0; window <= 4; window += 4)
        for (int causal = 0; causal <= 1; causal++) {
            ob_attn a = { Hq, Hkv, D, 1.0f / sqrtf((float)D), causal, window, 0 };
            size_t kvb = (size_t)Hkv * n_ctx * D * 4;
            ob_ptr kc = buf_from(NULL, kvb), vc = buf_from(NULL, kvb);
            /* fill earlier positions through kv_store too */
            float kpre[3 * 2 * 8], vpre[3 * 2 * 8], k[6 * 2 * 8], v[6 * 2 * 8], q[6 * 4 * 8];
            rnd(kpre, 48, 21, 1), rnd(vpre, 48, 22, 1), rnd(k, 96, 23, 1), rnd(v, 96, 24, 1), rnd(q, 192, 25, 1);
            ob_ptr kp = buf_from(kpre, sizeof kpre), vp = buf_from(vpre, sizeof vpre), kn = buf_from(k, sizeof k),
                   vn = buf_from(v, sizeof v), qp = buf_from(q, sizeof q), op = buf_from(NULL, sizeof q);
            B->ops->kv_store(B, kc, vc, n_ctx, kp, vp, 0, pos0, &a);
            B->ops->kv_store(B, kc, vc, n_ctx, kn, vn, pos0, n, &a);
            B->ops->attention(B, qp, kc, vc, n_ctx, op, pos0, n, &a);
            double ref[6 * 4 * 8];
            for (int i = 0; i < n; i++)
                for (int h = 0; h < Hq; h++) {
                    int kvh = h / (Hq / Hkv), qpos = pos0 + i, hi = causal ? qpos : pos0 + n - 1;
                    int lo = window ? (qpos - window + 1 > 0 ? qpos - window + 1 : 0) : 0;
                    double s[16], mx = -1e30, sum = 0;
                    for (int j = lo; j <= hi; j++) {
                        const float *kk = j < pos0 ? kpre + ((size_t)j * Hkv + kvh) * D : k + ((size_t)(j - pos0) * Hkv + kvh) * D;
                        double d = 0;
                        for (int c = 0; c < D; c++) d += (double)q[((size_t)i * Hq + h) * D + c] * kk[c];
                        s[j] = d / sqrt(D);
                        mx = fmax(mx, s[j]);
                    }
                    for (int j = lo; j <= hi; j++) sum += (s[j] = exp(s[j] - mx));
                    for (int c = 0; c < D; c++) {
                        double o = 0;
                        for (int j = lo; j <= hi; j++) {
                            const float *vv = j < pos0 ? vpre + ((size_t)j * Hkv + kvh) * D : v + ((size_t)(j - pos0) * Hkv + kvh) * D;
                            o += s[j] / sum * vv[c];
                        }
                        ref[((size_t)i * Hq + h) * D + c] = o;
                    }
                }
            double e = rel_err(host(op), ref, sizeof q / 4);
            if (e > 2e-6) th_fail(__FILE__, __LINE__, "attention causal %d window %d: rel err %g", causal, window, e);
        }
}

TEST(cpu_moe_route_and_experts) {
    setup();
    int n = 5, E = 6, k = 3, dim = 16, inter = 8;
    float lg[5 * 6];
    rnd(lg, sizeof lg / 4, 31, 3);
    lg[6 + 1] = lg[6 + 4]; /* a tie: the lower index wins */
    for (int norm = 0; norm <= 1; norm++) {
        ob_ptr lp = buf_from(lg, sizeof lg), ip = buf_from(NULL, (size_t)n * k * 4), wp = buf_from(NULL, (size_t)n * k * 4);
        B->ops->moe_route(B, lp, n, E, k, norm, ip, wp);
        const int32_t *ids = host(ip);
        const float *w = host(wp);
        for (int t = 0; t < n; t++) {
            double p[6], mx = -1e30, sum = 0, tot = 0;
            for (int e = 0; e < E; e++) mx = fmax(mx, lg[t * E + e]);
            for (int e = 0; e < E; e++) sum += (p[e] = exp(lg[t * E + e] - mx));
            int used[6] = { 0 };
            for (int j = 0; j < k; j++) {
                int best = -1;
                for (int e = 0; e < E; e++)
                    if (!used[e] && (best < 0 || p[e] > p[best])) best = e;
                used[best] = 1;
                CHECK_EQ_INT(ids[t * k + j], best);
                tot += p[best] / sum;
            }
            for (int j = 0; j < k; j++)
                CHECK_NEAR(w[t * k + j], p[ids[t * k + j]] / sum / (norm ? tot : 1), 1e-6);
        }
        if (norm) { /* experts: y += Σ w · down(silu(gate x) * up x) */
            ob_mat g[6], u[6], d[6];
            float *wg = malloc(sizeof(float) * E * inter * dim * 3);
            rnd(wg, (size_t)E * inter * dim * 3, 41, 0.5f);
            for (int e = 0; e < E; e++) {
                g[e] = ob_mat_make(buf_from(wg + (size_t)e * inter * dim, (size_t)inter * dim * 4), OB_F32, inter, dim);
                u[e] = ob_mat_make(buf_from(wg + (size_t)(E + e) * inter * dim, (size_t)inter * dim * 4), OB_F32, inter, dim);
                d[e] = ob_mat_make(buf_from(wg + (size_t)(2 * E + e) * inter * dim, (size_t)inter * dim * 4), OB_F32, dim, inter);
            }
            float x[5 * 16], y0[5 * 16];
            rnd(x, sizeof x / 4, 42, 1), rnd(y0, sizeof y0 / 4, 43, 1);
            ob_ptr xp = buf_from(x, sizeof x), yp = buf_from(y0, sizeof y0);
            B->ops->moe_experts(B, xp, n, k, ip, wp, g, u, d, E, yp);
            double ref[5 * 16];
            for (int t = 0; t < n; t++)
                for (int c = 0; c < dim; c++) ref[t * dim + c] = y0[t * dim + c];
            for (int t = 0; t < n; t++)
                for (int j = 0; j < k; j++) {
                    int e = ids[t * k + j];
                    const float *G = wg + (size_t)e * inter * dim, *U = wg + (size_t)(E + e) * inter * dim,
                                *Dn = wg + (size_t)(2 * E + e) * inter * dim;
                    double a[8];
                    for (int r = 0; r < inter; r++) {
                        double gs = 0, us = 0;
                        for (int c = 0; c < dim; c++) gs += (double)G[r * dim + c] * x[t * dim + c], us += (double)U[r * dim + c] * x[t * dim + c];
                        a[r] = gs / (1 + exp(-gs)) * us;
                    }
                    for (int c = 0; c < dim; c++) {
                        double o = 0;
                        for (int r = 0; r < inter; r++) o += Dn[c * inter + r] * a[r];
                        ref[t * dim + c] += w[t * k + j] * o;
                    }
                }
            CHECK(rel_err(host(yp), ref, sizeof x / 4) < 2e-5);
            free(wg);
        }
    }
}

TEST(cpu_get_rows_swiglu_add_copy) {
    setup();
    float tab[5 * 4];
    rnd(tab, 20, 51, 1);
    uint16_t tb[20];
    for (int i = 0; i < 20; i++) tb[i] = omni_f32_to_bf16(tab[i]);
    ob_mat t = ob_mat_make(buf_from(tb, sizeof tb), OB_BF16, 5, 4);
    int32_t ids[3] = { 4, 0, 2 };
    ob_ptr ip = buf_from(ids, sizeof ids), op = buf_from(NULL, 12 * 4);
    B->ops->get_rows(B, &t, ip, 3, op);
    for (int i = 0; i < 3; i++)
        for (int c = 0; c < 4; c++) CHECK(((float *)host(op))[i * 4 + c] == omni_bf16_to_f32(tb[ids[i] * 4 + c]));
    float g[7] = { -3, -1, 0, 0.5f, 1, 2, 9 }, u[7] = { 1, 2, 3, 4, 5, 6, 7 };
    ob_ptr gp = buf_from(g, sizeof g), up = buf_from(u, sizeof u);
    B->ops->swiglu(B, gp, up, gp, 7);
    for (int i = 0; i < 7; i++) CHECK_NEAR(((float *)host(gp))[i], g[i] / (1 + exp(-g[i])) * u[i], 1e-6 * (1 + fabs(g[i] * u[i])));
    B->ops->add(B, up, up, 7);
    for (int i = 0; i < 7; i++) CHECK(((float *)host(up))[i] == 2 * u[i]);
    B->ops->copy(B, up, gp, sizeof u);
    CHECK(memcmp(host(gp), host(up), sizeof u) == 0);
}

TEST(cpu_encoder_ops) {
    setup();
    /* layer_norm with and without bias */
    int rows = 3, dim = 37;
    float x[3 * 37], w[37], bb[37];
    rnd(x, sizeof x / 4, 61, 3), rnd(w, 37, 62, 1), rnd(bb, 37, 63, 1);
    ob_ptr xp = buf_from(x, sizeof x), yp = buf_from(NULL, sizeof x);
    ob_mat wm = ob_mat_make(buf_from(w, sizeof w), OB_F32, 1, dim), bm = ob_mat_make(buf_from(bb, sizeof bb), OB_F32, 1, dim);
    ob_mat none = { { NULL, 0 }, OB_F32, 1, dim, 0 };
    for (int hb = 0; hb < 2; hb++) {
        B->ops->layer_norm(B, xp, &wm, hb ? &bm : &none, yp, rows, dim, 1e-5f);
        double ref[3 * 37];
        for (int r = 0; r < rows; r++) {
            double mu = 0, var = 0;
            for (int i = 0; i < dim; i++) mu += x[r * dim + i] / (double)dim;
            for (int i = 0; i < dim; i++) var += (x[r * dim + i] - mu) * (x[r * dim + i] - mu) / dim;
            for (int i = 0; i < dim; i++) ref[r * dim + i] = (x[r * dim + i] - mu) / sqrt(var + 1e-5) * w[i] + (hb ? bb[i] : 0);
        }
        CHECK(rel_err(host(yp), ref, sizeof x / 4) < 2e-6);
    }
    /* gelu, both forms */
    float g[9] = { -5, -2, -0.5f, -1e-3f, 0, 0.3f, 1, 2.5f, 8 };
    for (int t = 0; t < 2; t++) {
        ob_ptr gp = buf_from(g, sizeof g);
        B->ops->gelu(B, gp, gp, 9, t);
        for (int i = 0; i < 9; i++) {
            double v = g[i], r = t ? 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))) : 0.5 * v * (1 + erf(v / sqrt(2)));
            CHECK_NEAR(((float *)host(gp))[i], r, 1e-6 * (1 + fabs(r)));
        }
    }
    /* permute: [2][3][4] -> [4][2][3] */
    float src[24];
    for (int i = 0; i < 24; i++) src[i] = (float)i;
    ob_ptr sp = buf_from(src, sizeof src), dp = buf_from(NULL, sizeof src);
    int64_t d[4] = { 1, 4, 2, 3 }, st[4] = { 0, 1, 12, 4 };
    B->ops->permute(B, sp, dp, d, st);
    for (int a = 0; a < 4; a++)
        for (int b2 = 0; b2 < 2; b2++)
            for (int c = 0; c < 3; c++) CHECK(((float *)host(dp))[(a * 2 + b2) * 3 + c] == src[b2 * 12 + c * 4 + a]);
    /* im2col (k 3, stride 2, pad 1) then matmul = a direct convolution */
    int Bn = 2, C = 3, H = 5, W = 6, K = 3, Co = 4, Ho = 3, Wo = 3;
    float in[2 * 3 * 5 * 6], wt[4 * 27];
    rnd(in, sizeof in / 4, 71, 1), rnd(wt, sizeof wt / 4, 72, 1);
    ob_ptr ip = buf_from(in, sizeof in), cp = buf_from(NULL, sizeof(float) * Bn * Ho * Wo * C * K * K),
           op = buf_from(NULL, sizeof(float) * Bn * Ho * Wo * Co);
    int64_t s4[4] = { C * H * W, H * W, W, 1 };
    B->ops->im2col(B, ip, Bn, C, H, W, s4, K, 2, 1, cp);
    ob_mat wmat = ob_mat_make(buf_from(wt, sizeof wt), OB_F32, Co, C * K * K);
    B->ops->matmul(B, &wmat, cp, op, Bn * Ho * Wo, 0);
    for (int bi = 0; bi < Bn; bi++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int co = 0; co < Co; co++) {
                    double r = 0;
                    for (int c = 0; c < C; c++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++) {
                                int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                                    r += (double)wt[co * 27 + (c * 3 + ky) * 3 + kx] * in[((bi * C + c) * H + iy) * W + ix];
                            }
                    CHECK_NEAR(((float *)host(op))[((bi * Ho + oy) * Wo + ox) * Co + co], r, 1e-5);
                }
    /* add_rows */
    float base[4 * 2] = { 0 }, add[2 * 2] = { 1, 2, 3, 4 };
    int32_t idx[2] = { 3, 1 };
    ob_ptr bp = buf_from(base, sizeof base), ap = buf_from(add, sizeof add), xp2 = buf_from(idx, sizeof idx);
    B->ops->add_rows(B, bp, xp2, ap, 2, 2);
    float want[8] = { 0, 0, 3, 4, 0, 0, 1, 2 };
    CHECK(memcmp(host(bp), want, sizeof want) == 0);
}

TEST(cpu_rope_vision_2d) {
    /* Qwen3-Omni ViT rotary: head_dim D, inv[j] = theta^(-2j/(D/2)), angle = y*inv[j] for slots j < D/4, x*inv[j - D/4]
     * after; rotate-half over all D dims */
    setup();
    int n = 3, heads = 2, D = 24;
    float x[3 * 2 * 24], pos3[9] = { 0, 1, 5, 2, 0, 7, 0, 0, 0 };
    rnd(x, sizeof x / 4, 81, 1);
    double ref[3 * 2 * 24];
    for (int t = 0; t < n; t++)
        for (int h = 0; h < heads; h++) {
            const float *v = x + (t * heads + h) * D;
            for (int i = 0; i < D / 2; i++) {
                int q = D / 4, j = i < q ? i : i - q;
                double inv = 1.0 / pow(10000.0, 2.0 * j / (D / 2)), a = (i < q ? pos3[t] : pos3[n + t]) * inv;
                ref[(t * heads + h) * D + i] = v[i] * cos(a) - v[i + D / 2] * sin(a);
                ref[(t * heads + h) * D + i + D / 2] = v[i + D / 2] * cos(a) + v[i] * sin(a);
            }
        }
    ob_ptr xp = buf_from(x, sizeof x), pp = buf_from(pos3, sizeof pos3);
    ob_rope r = { 10000.0f, D, D, { D / 4, D / 4, 0 }, 0, 1 };
    B->ops->rope(B, xp, pp, n, heads, &r);
    CHECK(rel_err(host(xp), ref, sizeof x / 4) < 1e-5);
}

/* The fused attention-block op (backend.h, optional section) equals its definition, the unfused sequence
 * rms_norm(q) ×heads, rms_norm(k) ×heads, rope(q), rope(k), kv_store, bit for bit (same code, same order). */
TEST(cpu_qk_norm_rope_kv_matches_sequence) {
    setup();
    REQUIRE(B->ops->qk_norm_rope_kv != NULL);
    enum { HQ = 4, HKV = 2, D = 64, N = 3, CTX = 12, POS0 = 5 };
    ob_rope rope = { 1e6f, D, D, { 12, 10, 10 }, 1, 0 };
    ob_attn a = { HQ, HKV, D, 0.125f, 1, 0, 0 };
    static float q[N * HQ * D], k[N * HKV * D], v[N * HKV * D], cache[HKV * CTX * D], pos[3 * N], wq[D], wk[D];
    rnd(q, N * HQ * D, 31, 3.0f);
    rnd(k, N * HKV * D, 32, 3.0f);
    rnd(v, N * HKV * D, 33, 1.0f);
    rnd(cache, HKV * CTX * D, 34, 1.0f);
    rnd(wq, D, 35, 1.0f);
    rnd(wk, D, 36, 1.0f);
    for (int i = 0; i < 3 * N; i++) pos[i] = (float)(POS0 + i % N + 7 * (i / N));
    ob_mat mq = ob_mat_make(buf_from(wq, sizeof wq), OB_F32, 1, D);
    ob_mat mk = ob_mat_make(buf_from(wk, sizeof wk), OB_F32, 1, D);
    ob_ptr P = buf_from(pos, sizeof pos);
    ob_ptr q1 = buf_from(q, sizeof q), k1 = buf_from(k, sizeof k), v1 = buf_from(v, sizeof v),
           kc1 = buf_from(cache, sizeof cache), vc1 = buf_from(cache, sizeof cache);
    ob_ptr q2 = buf_from(q, sizeof q), k2 = buf_from(k, sizeof k), v2 = buf_from(v, sizeof v),
           kc2 = buf_from(cache, sizeof cache), vc2 = buf_from(cache, sizeof cache);
    B->ops->qk_norm_rope_kv(B, q1, k1, v1, &mq, &mk, 1e-6f, P, &rope, kc1, vc1, CTX, POS0, N, &a);
    B->ops->rms_norm(B, q2, &mq, q2, N * HQ, D, 1e-6f);
    B->ops->rms_norm(B, k2, &mk, k2, N * HKV, D, 1e-6f);
    B->ops->rope(B, q2, P, N, HQ, &rope);
    B->ops->rope(B, k2, P, N, HKV, &rope);
    B->ops->kv_store(B, kc2, vc2, CTX, k2, v2, POS0, N, &a);
    CHECK(!memcmp(host(q1), host(q2), sizeof q));
    CHECK(!memcmp(host(k1), host(k2), sizeof k));
    CHECK(!memcmp(host(kc1), host(kc2), sizeof cache));
    CHECK(!memcmp(host(vc1), host(vc2), sizeof cache));
    /* the op did change q and the cache rows POS0..POS0+N-1 (not a no-op) */
    CHECK(memcmp(host(q1), q, sizeof q) != 0);
    CHECK(memcmp(host(kc1), cache, sizeof cache) != 0);
}

/* norm_matvec equals its definition, rms_norm(x -> xn) then matmul(w, xn), bit for bit */
TEST(cpu_norm_matvec_matches_sequence) {
    setup();
    REQUIRE(B->ops->norm_matvec != NULL);
    enum { ROWS = 19, COLS = 72 };
    static float x[COLS], w[ROWS * COLS], nw[COLS];
    rnd(x, COLS, 41, 3.0f);
    rnd(w, ROWS * COLS, 42, 1.0f);
    rnd(nw, COLS, 43, 1.0f);
    ob_mat wm = ob_mat_make(buf_from(w, sizeof w), OB_F32, ROWS, COLS);
    ob_mat nm = ob_mat_make(buf_from(nw, sizeof nw), OB_F32, 1, COLS);
    ob_ptr xp = buf_from(x, sizeof x), y1 = buf_from(NULL, ROWS * 4), xn1 = buf_from(NULL, sizeof x),
           y2 = buf_from(NULL, ROWS * 4), xn2 = buf_from(NULL, sizeof x);
    B->ops->norm_matvec(B, xp, &nm, 1e-6f, &wm, y1, xn1);
    B->ops->rms_norm(B, xp, &nm, xn2, 1, COLS, 1e-6f);
    B->ops->matmul(B, &wm, xn2, y2, 1, 0);
    CHECK(!memcmp(host(y1), host(y2), ROWS * 4));
    CHECK(!memcmp(host(xn1), host(xn2), sizeof x));
    CHECK(memcmp(host(xn1), x, sizeof x) != 0); /* x was normalised (not copied) */
}

/* many queries take the blocked GEMM path (S = qKᵀ, masked softmax, PV): same results as a plain loop */
TEST(cpu_attention_many_queries) {
    setup();
    int Hq = 4, Hkv = 2, D = 24, n_ctx = 160, pos0 = 7, n = 90;
    size_t kvb = (size_t)Hkv * n_ctx * D * 4;
    float *k = malloc(sizeof(float) * (pos0 + n) * Hkv * D), *v = malloc(sizeof(float) * (pos0 + n) * Hkv * D),
          *q = malloc(sizeof(float) * n * Hq * D);
    rnd(k, (size_t)(pos0 + n) * Hkv * D, 91, 1), rnd(v, (size_t)(pos0 + n) * Hkv * D, 92, 1), rnd(q, (size_t)n * Hq * D, 93, 1);
    double *ref = malloc(sizeof(double) * n * Hq * D), *sc = malloc(sizeof(double) * (pos0 + n));
    for (int causal = 0; causal <= 1; causal++)
        for (int window = 0; window <= 17; window += 17) {
            ob_attn a = { Hq, Hkv, D, 1.0f / sqrtf((float)D), causal, window, 0 };
            ob_ptr kc = buf_from(NULL, kvb), vc = buf_from(NULL, kvb), kp = buf_from(k, sizeof(float) * (pos0 + n) * Hkv * D),
                   vp = buf_from(v, sizeof(float) * (pos0 + n) * Hkv * D), qp = buf_from(q, sizeof(float) * n * Hq * D),
                   op = buf_from(NULL, sizeof(float) * n * Hq * D);
            B->ops->kv_store(B, kc, vc, n_ctx, kp, vp, 0, pos0 + n, &a);
            B->ops->attention(B, qp, kc, vc, n_ctx, op, pos0, n, &a);
            for (int i = 0; i < n; i++)
                for (int h = 0; h < Hq; h++) {
                    int kvh = h / (Hq / Hkv), qpos = pos0 + i, hi = causal ? qpos : pos0 + n - 1;
                    int lo = window ? (qpos - window + 1 > 0 ? qpos - window + 1 : 0) : 0;
                    double mx = -1e30, sum = 0;
                    for (int j = lo; j <= hi; j++) {
                        double d = 0;
                        for (int c = 0; c < D; c++) d += (double)q[((size_t)i * Hq + h) * D + c] * k[((size_t)j * Hkv + kvh) * D + c];
                        sc[j] = d / sqrt(D);
                        mx = fmax(mx, sc[j]);
                    }
                    for (int j = lo; j <= hi; j++) sum += (sc[j] = exp(sc[j] - mx));
                    for (int c = 0; c < D; c++) {
                        double o = 0;
                        for (int j = lo; j <= hi; j++) o += sc[j] / sum * v[((size_t)j * Hkv + kvh) * D + c];
                        ref[((size_t)i * Hq + h) * D + c] = o;
                    }
                }
            double e = rel_err(host(op), ref, (size_t)n * Hq * D);
            if (e > 2e-6) th_fail(__FILE__, __LINE__, "attention (gemm path) causal %d window %d: rel err %g", causal, window, e);
        }
    free(k), free(v), free(q), free(ref), free(sc);
}
