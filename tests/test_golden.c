/* test_golden.c — golden tests against transformers 5.17: the tiny checkpoints of tests/fixtures (made by
 * tests/gen_fixtures.py) run on our CPU back-end must reproduce the reference's fp32 logits for every prompt
 * position and its greedy continuation token for token.
 *
 * Tolerance: max |ours − ref| ≤ 1e-4 × max |ref| per fixture (fp32 against fp32; the remaining difference is
 * summation order). Greedy ids must be identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "omni.h"
#include "safetensors.h"

#define GOLDEN_REL_TOL 1e-4
/* Vulkan kernels accumulate in fp32 too but in other orders (tiles, subgroup reductions) and may keep the KV cache
 * in f16: the tolerance is looser, greedy ids must still match. */
#define GOLDEN_VK_REL_TOL 2e-3

static double g_tol = GOLDEN_REL_TOL;

static int g_no_device;

/* weights: as stored, or quantized to Q8_0 at load (OMNI_WEIGHTS_Q8_0) */
static omni_model *load_fixture_w(const char *dir, omni_backend_kind be, omni_weight_mode weights) {
    omni_model_params p = omni_model_default_params();
    p.backend = be;
    p.weights = weights;
    omni_model *m = NULL;
    char err[600];
    if (omni_model_load(dir, &p, &m, err, sizeof err)) {
        if (be == OMNI_BACKEND_VULKAN && (strstr(err, "no Vulkan") || strstr(err, "without Vulkan"))) {
            g_no_device = 1;
            return NULL;
        }
        th_fail(__FILE__, __LINE__, "load %s%s: %s", dir, weights == OMNI_WEIGHTS_Q8_0 ? " (q8_0)" : "", err);
        return NULL;
    }
    return m;
}

static omni_model *load_fixture(const char *dir, omni_backend_kind be) {
    return load_fixture_w(dir, be, OMNI_WEIGHTS_AS_STORED);
}

/* ids of a [1,T] or [T] int64/int32 tensor */
static int32_t *read_ids(const st_tensor *t, int *n) {
    *n = (int)t->shape[t->n_dims - 1];
    int32_t *ids = malloc(sizeof *ids * (size_t)*n);
    for (int i = 0; i < *n; i++) {
        if (t->dtype == ST_I64) {
            int64_t v;
            memcpy(&v, (const char *)t->data + 8 * (size_t)i, 8);
            ids[i] = (int32_t)v;
        } else memcpy(&ids[i], (const char *)t->data + 4 * (size_t)i, 4);
    }
    return ids;
}

/* Runs the prompt `ids_name` of the fixture and checks `logits_name` and (if present) `gen_name`. */
static void check_prompt(omni_model *m, st_set *in, st_set *ref, const char *ids_name, const char *logits_name,
                         const char *gen_name, const char *label) {
    const st_tensor *ti = st_find(in, ids_name), *tl = st_find(ref, logits_name);
    if (!ti || !tl) {
        th_fail(__FILE__, __LINE__, "%s: fixture lacks %s or %s", label, ids_name, logits_name);
        return;
    }
    int T;
    int32_t *ids = read_ids(ti, &T);
    omni_model_info info;
    omni_model_get_info(m, &info);
    int V = info.vocab_size;
    if (tl->n_dims != 2 || tl->shape[0] != T || tl->shape[1] != V || tl->dtype != ST_F32) {
        th_fail(__FILE__, __LINE__, "%s: reference logits shape mismatch", label);
        free(ids);
        return;
    }
    omni_session_params sp = omni_session_default_params();
    sp.n_ctx = T + 64;
    omni_session *s;
    if (omni_session_new(m, &sp, &s)) {
        th_fail(__FILE__, __LINE__, "%s: session: %s", label, omni_model_error(m));
        free(ids);
        return;
    }
    float *lg = malloc(sizeof(float) * (size_t)T * V);
    int rc = omni_session_append(s, ids, T, lg, 1);
    if (rc) th_fail(__FILE__, __LINE__, "%s: append: %s", label, omni_session_error(s));
    else {
        const float *r = tl->data;
        double md = 0, mx = 0;
        for (size_t i = 0; i < (size_t)T * V; i++) {
            md = fmax(md, fabs((double)lg[i] - r[i]));
            mx = fmax(mx, fabs((double)r[i]));
        }
        printf("    %s: max |diff| %.3g, max |ref| %.3g, relative %.3g (tolerance %g)\n", label, md, mx, md / mx, g_tol);
        if (md > g_tol * mx) th_fail(__FILE__, __LINE__, "%s: logits differ: %g > %g", label, md, g_tol * mx);
        const st_tensor *tg = gen_name ? st_find(ref, gen_name) : NULL;
        if (tg) {
            int N;
            int32_t *want = read_ids(tg, &N);
            float *last = malloc(sizeof(float) * V);
            memcpy(last, lg + (size_t)(T - 1) * V, sizeof(float) * V);
            for (int g = 0; g < N; g++) {
                int32_t best = 0;
                for (int v = 1; v < V; v++)
                    if (last[v] > last[best]) best = v;
                if (best != want[g]) {
                    th_fail(__FILE__, __LINE__, "%s: generated[%d] = %d, reference %d", label, g, best, want[g]);
                    break;
                }
                if (g + 1 < N && omni_session_append(s, &best, 1, last, 0)) {
                    th_fail(__FILE__, __LINE__, "%s: decode: %s", label, omni_session_error(s));
                    break;
                }
            }
            free(last);
            free(want);
        }
    }
    free(lg);
    free(ids);
    omni_session_free(s);
}

static void golden(const char *name, omni_backend_kind be) {
    char dir[512], p1[600], p2[600];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES, name);
    snprintf(p1, sizeof p1, "%s/inputs.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/reference.safetensors", dir);
    if (access(p1, R_OK)) {
        th_fail(__FILE__, __LINE__, "fixture %s not unpacked (make test unpacks tests/fixtures/*.tar.xz)", name);
        return;
    }
    g_tol = be == OMNI_BACKEND_VULKAN ? GOLDEN_VK_REL_TOL : GOLDEN_REL_TOL;
    omni_model *m = load_fixture(dir, be);
    if (!m) {
        if (g_no_device) SKIP("no Vulkan device");
        return;
    }
    st_set *in = NULL, *ref = NULL;
    omni_err e;
    if (st_open_file(p1, &in, &e) || st_open_file(p2, &ref, &e)) th_fail(__FILE__, __LINE__, "%s", e.msg);
    else check_prompt(m, in, ref, "input_ids", "logits", "generated", name);
    st_close(in);
    st_close(ref);
    omni_model_free(m);
}

TEST(golden_qwen3_dense) { golden("qwen3-dense", OMNI_BACKEND_CPU); }
TEST(golden_qwen3_dense_tied) { golden("qwen3-dense-tied", OMNI_BACKEND_CPU); }
TEST(golden_qwen3_moe) { golden("qwen3-moe", OMNI_BACKEND_CPU); }
TEST(golden_qwen3_omni_thinker_text) { golden("qwen3-omni", OMNI_BACKEND_CPU); }

/* the same fixtures on the Vulkan back-end (Mesa lavapipe in CI) */
TEST(golden_vulkan_qwen3_dense) { golden("qwen3-dense", OMNI_BACKEND_VULKAN); }
TEST(golden_vulkan_qwen3_dense_tied) { golden("qwen3-dense-tied", OMNI_BACKEND_VULKAN); }
TEST(golden_vulkan_qwen3_moe) { golden("qwen3-moe", OMNI_BACKEND_VULKAN); }
TEST(golden_vulkan_qwen3_omni_thinker_text) { golden("qwen3-omni", OMNI_BACKEND_VULKAN); }

/* ---- Q8_0 on the Vulkan back-end against Q8_0 on the CPU -----------------------------------------------------------
 * Both back-ends quantize the same BF16/F32 fixture weights at load (omni_model_params.weights = Q8_0), so they hold
 * the same Q8_0 weights. With fp32 activations on the Vulkan side too (OMNI_VK_Q8_INT8=0) the prompt's logits must
 * agree within the Vulkan golden tolerance and the greedy continuations (as many tokens as the fixture's reference
 * generates) must be identical; with the default int8 activations of Q8_0 decode (mvq8.comp: activations rounded
 * per block of 16, 0.3-1% of a row's largest output) the prompt's logits are the same kernels' and the decoded
 * logits are reported (their largest difference relative to the CPU's) and must stay within 5%. */
/* the prompt's logits (T x V) and then n greedy steps: ids into gen, each step's logits into dec (n x V) */
static float *q8_run(omni_model *m, const int32_t *ids, int T, int V, int n, int32_t *gen, float *dec) {
    omni_session_params sp = omni_session_default_params();
    sp.n_ctx = T + n + 8;
    omni_session *s;
    if (omni_session_new(m, &sp, &s)) return NULL;
    float *lg = malloc(sizeof(float) * (size_t)T * V);
    int rc = omni_session_append(s, ids, T, lg, 1);
    const float *last = lg + (size_t)(T - 1) * V;
    for (int g = 0; g < n && rc == 0; g++) {
        int32_t best = 0;
        for (int v = 1; v < V; v++)
            if (last[v] > last[best]) best = v;
        gen[g] = best;
        rc = omni_session_append(s, &best, 1, dec + (size_t)g * V, 0);
        last = dec + (size_t)g * V;
    }
    omni_session_free(s);
    if (rc) {
        free(lg);
        return NULL;
    }
    return lg;
}

static void golden_q8(const char *name) {
    char dir[512], p1[600];
    snprintf(dir, sizeof dir, "%s/%s", FIXTURES, name);
    snprintf(p1, sizeof p1, "%s/inputs.safetensors", dir);
    if (access(p1, R_OK)) {
        th_fail(__FILE__, __LINE__, "fixture %s not unpacked (make test unpacks tests/fixtures/*.tar.xz)", name);
        return;
    }
    st_set *in = NULL;
    omni_err e;
    if (st_open_file(p1, &in, &e)) {
        th_fail(__FILE__, __LINE__, "%s", e.msg);
        return;
    }
    const st_tensor *ti = st_find(in, "input_ids");
    int T = 0;
    int32_t *ids = ti ? read_ids(ti, &T) : NULL;
    omni_model *mc = ids ? load_fixture_w(dir, OMNI_BACKEND_CPU, OMNI_WEIGHTS_Q8_0) : NULL;
    for (int int8 = 0; mc && int8 < 2; int8++) {
        setenv("OMNI_VK_Q8_INT8", int8 ? "1" : "0", 1);
        omni_model *mv = load_fixture_w(dir, OMNI_BACKEND_VULKAN, OMNI_WEIGHTS_Q8_0);
        if (!mv) break;
        omni_model_info info;
        omni_model_get_info(mc, &info);
        const int V = info.vocab_size, N = 8;
        int32_t gc[8], gv[8];
        float *dc = malloc(sizeof(float) * N * V), *dv = malloc(sizeof(float) * N * V);
        float *lc = q8_run(mc, ids, T, V, N, gc, dc), *lv = q8_run(mv, ids, T, V, N, gv, dv);
        if (!lc || !lv) th_fail(__FILE__, __LINE__, "%s: q8_0 run failed", name);
        else {
            double ep = th_rel_err(lv, lc, (size_t)T * V), ed = th_rel_err(dv, dc, (size_t)N * V);
            printf("    %s q8_0, %s activations: prompt logits rel %.3g, decoded logits rel %.3g\n", name,
                   int8 ? "int8" : "fp32", ep, ed);
            if (ep > GOLDEN_VK_REL_TOL) th_fail(__FILE__, __LINE__, "%s q8_0: prompt logits rel %g", name, ep);
            if (!int8 && memcmp(gc, gv, sizeof gc))
                th_fail(__FILE__, __LINE__, "%s q8_0: greedy continuation differs from the CPU's", name);
            else if (!int8 && ed > GOLDEN_VK_REL_TOL)
                th_fail(__FILE__, __LINE__, "%s q8_0: decoded logits rel %g", name, ed);
            else if (int8 && !memcmp(gc, gv, sizeof gc) && ed > 0.05)
                th_fail(__FILE__, __LINE__, "%s q8_0, int8 activations: decoded logits rel %g", name, ed);
        }
        free(lc), free(lv), free(dc), free(dv);
        omni_model_free(mv);
    }
    unsetenv("OMNI_VK_Q8_INT8");
    omni_model_free(mc);
    free(ids);
    st_close(in);
    if (g_no_device) SKIP("no Vulkan device");
}

TEST(golden_vulkan_q8_0_dense) { golden_q8("qwen3-dense"); }
TEST(golden_vulkan_q8_0_moe) { golden_q8("qwen3-moe"); }
TEST(golden_vulkan_q8_0_omni_thinker_text) { golden_q8("qwen3-omni"); }

/* The published Qwen3-Omni config is in the older rope_scaling style; the fixture's config.json mirrors it and
 * config.rope_parameters.json holds the newer style: both must give the same numbers. */
TEST(golden_qwen3_omni_newer_config_style) {
    char tmpl[] = "/tmp/omni-golden-XXXXXX";
    char *tmp = mkdtemp(tmpl);
    REQUIRE(tmp);
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "cd %s/qwen3-omni && for f in *; do ln -s \"$PWD/$f\" %s/; done && rm %s/config.json && "
             "cp config.rope_parameters.json %s/config.json",
             FIXTURES, tmp, tmp, tmp);
    REQUIRE(system(cmd) == 0);
    char p1[600], p2[600];
    snprintf(p1, sizeof p1, "%s/inputs.safetensors", tmp);
    snprintf(p2, sizeof p2, "%s/reference.safetensors", tmp);
    omni_model *m = load_fixture(tmp, OMNI_BACKEND_CPU);
    st_set *in = NULL, *ref = NULL;
    omni_err e;
    if (m && !st_open_file(p1, &in, &e) && !st_open_file(p2, &ref, &e))
        check_prompt(m, in, ref, "input_ids", "logits", "generated", "qwen3-omni (rope_parameters)");
    st_close(in);
    st_close(ref);
    omni_model_free(m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
}

/* `omni eval` end to end through the binary: its output file must hold the same logits and greedy ids. */
static void eval_command(const char *backend, double tol) {
    const char *bin = getenv("OMNI_BIN");
    if (!bin) SKIP("OMNI_BIN not set (make test sets it)");
    char out[] = "/tmp/omni-eval-XXXXXX";
    int fd = mkstemp(out);
    REQUIRE(fd >= 0);
    close(fd);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s eval -m %s/qwen3-moe -i %s/qwen3-moe/inputs.safetensors -o %s --generate 8 --backend %s 2>&1",
             bin, FIXTURES, FIXTURES, out, backend);
    FILE *pf = popen(cmd, "r");
    char msg[600] = "";
    if (pf && !fgets(msg, sizeof msg, pf)) msg[0] = 0;
    int st = pf ? pclose(pf) : -1;
    if (st != 0 && strstr(msg, "Vulkan")) {
        unlink(out);
        SKIP("no Vulkan device");
    }
    REQUIRE(st == 0);
    st_set *got = NULL, *ref = NULL;
    omni_err e;
    char p2[600];
    snprintf(p2, sizeof p2, "%s/qwen3-moe/reference.safetensors", FIXTURES);
    REQUIRE(st_open_file(out, &got, &e) == 0);
    REQUIRE(st_open_file(p2, &ref, &e) == 0);
    const st_tensor *a = st_find(got, "logits"), *b = st_find(ref, "logits"), *ga = st_find(got, "generated"),
                    *gb = st_find(ref, "generated");
    REQUIRE(a && b && ga && gb);
    CHECK(a->nbytes == b->nbytes);
    double md = 0, mx = 0;
    for (size_t i = 0; i < a->nbytes / 4; i++) {
        md = fmax(md, fabs(((const float *)a->data)[i] - ((const float *)b->data)[i]));
        mx = fmax(mx, fabs(((const float *)b->data)[i]));
    }
    CHECK(md <= tol * mx);
    CHECK(ga->nbytes == gb->nbytes && memcmp(ga->data, gb->data, ga->nbytes) == 0);
    st_close(got);
    st_close(ref);
    unlink(out);
    /* bad input: a missing inputs file is one clear line and exit code 1 */
    snprintf(cmd, sizeof cmd, "%s eval -m %s/qwen3-moe -i /nonexistent.safetensors -o %s 2>&1", bin, FIXTURES, out);
    FILE *f = popen(cmd, "r");
    char line[512] = "";
    CHECK(fgets(line, sizeof line, f) != NULL);
    CHECK(strstr(line, "/nonexistent.safetensors") != NULL);
    CHECK(WEXITSTATUS(pclose(f)) == 1);
}

TEST(golden_eval_command) { eval_command("cpu", GOLDEN_REL_TOL); }
TEST(golden_eval_command_vulkan) { eval_command("vulkan", GOLDEN_VK_REL_TOL); }

/* omni_generate's decode steps bring only the chunk candidates to the host (backend.h topk_chunks; the draw from them
 * where it is exact, omni_sampler_sample_cand): the ids must equal a loop that samples every whole logits row, for
 * greedy decoding and top-k sampling with a repetition penalty (fixture qwen3-moe: 4096 logits, two full chunks) */
static void generate_candidates(omni_backend_kind be) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/qwen3-moe", FIXTURES);
    omni_model *m = load_fixture(dir, be);
    if (!m) {
        if (g_no_device) SKIP("no Vulkan device");
        return;
    }
    omni_model_info in;
    omni_model_get_info(m, &in);
    const int32_t prompt[5] = { 11, 402, 77, 1500, 9 };
    const int N = 24;
    for (int c = 0; c < 3; c++) {
        omni_sampling_params p = omni_sampling_default_params();
        if (c > 0) p.temperature = c == 1 ? 0.7f : 1.0f, p.top_k = c == 1 ? 20 : 40, p.top_p = c == 1 ? 0.9f : 1.0f;
        p.repetition_penalty = 1.05f;
        p.seed = 99;
        omni_session *s;
        REQUIRE(omni_session_new(m, NULL, &s) == 0);
        int32_t got[32], want[32];
        int n_got = 0, n_want = 0;
        REQUIRE(omni_session_append(s, prompt, 5, NULL, 0) == 0);
        CHECK_EQ_INT(omni_generate(s, &p, N, NULL, NULL, got, &n_got), 0);
        /* the reference loop: whole rows, the sampler as omni_generate uses it */
        float *lg = malloc((size_t)in.vocab_size * 4);
        omni_sampler *smp = omni_sampler_new(&p, in.vocab_size);
        REQUIRE(lg && smp);
        omni_session_reset(s);
        REQUIRE(omni_session_append(s, prompt, 5, lg, 0) == 0);
        for (int i = 0; i < 5; i++) omni_sampler_accept(smp, prompt[i]);
        while (n_want < N) {
            int32_t id = omni_sampler_sample(smp, lg);
            omni_sampler_accept(smp, id);
            want[n_want++] = id;
            int eos = 0;
            for (int e = 0; e < in.n_eos; e++) eos |= id == in.eos_ids[e];
            if (eos || n_want == N || omni_session_append(s, &id, 1, lg, 0)) break;
        }
        CHECK_EQ_INT(n_got, n_want);
        for (int i = 0; i < n_got && i < n_want; i++)
            if (got[i] != want[i]) {
                th_fail(__FILE__, __LINE__, "case %d: token %d is %d, the whole-row loop drew %d", c, i, got[i], want[i]);
                break;
            }
        if (c == 0 && n_want == N) { /* greedy continued by a second call: it starts from the row left on the device */
            int32_t part[32];
            int n1 = 0, n2 = 0;
            omni_session_reset(s);
            REQUIRE(omni_session_append(s, prompt, 5, NULL, 0) == 0);
            CHECK_EQ_INT(omni_generate(s, &p, N / 2, NULL, NULL, part, &n1), 0);
            CHECK_EQ_INT(omni_generate(s, &p, N - N / 2, NULL, NULL, part + N / 2, &n2), 0);
            CHECK(n1 == N / 2 && n2 == N - N / 2 && !memcmp(part, want, sizeof(int32_t) * (size_t)N));
        }
        omni_sampler_free(smp);
        free(lg);
        omni_session_free(s);
    }
    omni_model_free(m);
}

TEST(generate_candidates_cpu) { generate_candidates(OMNI_BACKEND_CPU); }
TEST(generate_candidates_vulkan) { generate_candidates(OMNI_BACKEND_VULKAN); }
