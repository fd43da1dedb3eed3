/* test_cli_media.c — the omni binary end to end with text, audio and images on the tiny Qwen3-Omni fixture (plus
 * the real Qwen3-Omni tokenizer): tokenize, generate (text, --audio, --image, both), preprocess against the
 * reference's own processor outputs, and the errors a user meets with bad files. The fixture's weights are random,
 * so the replies are noise; what is checked is that every stage runs and the outputs have the right form. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli_run.h"
#include "harness.h"
#include "safetensors.h"

#ifndef TESTDATA_BUILD
#define TESTDATA_BUILD "build/testdata"
#endif

static char g_dir[64];

/* fixture folder + tokenizer.json, as a checkpoint folder would be */
static int model_dir(void) {
    if (g_dir[0]) return 1;
    snprintf(g_dir, sizeof g_dir, "/tmp/omni-cli-XXXXXX");
    if (!mkdtemp(g_dir)) return 0;
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "for f in %s/qwen3-omni/*; do ln -s \"$PWD/$f\" %s/; done && ln -s \"$PWD/%s/qwen3-omni-tokenizer.json\" "
             "%s/tokenizer.json && cp tests/data/vision/preprocessor_config.json %s/",
             FIXTURES, g_dir, TESTDATA_BUILD, g_dir, g_dir);
    return system(cmd) == 0;
}


#define SETUP()                                                                                                       \
    do {                                                                                                              \
        if (!getenv("OMNI_BIN")) SKIP("OMNI_BIN not set (make test sets it)");                                       \
        REQUIRE(model_dir());                                                                                         \
    } while (0)

TEST(cli_tokenize_roundtrip_real_tokenizer) {
    SETUP();
    static char out[4096];
    char a[512];
    snprintf(a, sizeof a, "tokenize -m %s 'Hello, world<|im_end|> 你好'", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strcmp(out, "9707 11 1879 151645 220 108386\n") == 0);
    snprintf(a, sizeof a, "tokenize -m %s --decode 9707 11 1879 151645 220 108386", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strcmp(out, "Hello, world<|im_end|> 你好\n") == 0);
    snprintf(a, sizeof a, "tokenize -m %s --decode 99999999", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 1);
}

TEST(cli_generate_text_audio_image) {
    SETUP();
    static char out[16384];
    char a[1024];
    snprintf(a, sizeof a, "generate -m %s -p 'Hi there' -n 6 --stats", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "generated 6 tokens") != NULL);
    snprintf(a, sizeof a, "generate -m %s --audio tests/data/audio/speech16k.wav -p 'Transcribe this.' -n 4 --stats", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "generated 4 tokens") != NULL);
    snprintf(a, sizeof a, "generate -m %s --image tests/data/vision/img/photo.jpg -p 'Describe this image.' -n 4 --stats", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "generated 4 tokens") != NULL);
    /* audio alone (a spoken question), audio + two images */
    snprintf(a, sizeof a,
             "generate -m %s --audio tests/data/audio/sine440_1s.wav --image tests/data/vision/img/rgba.png "
             "--image tests/data/vision/img/odd_rgb.png -n 3 --stats",
             g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "generated 3 tokens") != NULL);
}

TEST(cli_generate_video_frames) {
    SETUP();
    static char out[16384];
    char a[1400], d[] = "/tmp/omni-frames-XXXXXX";
    REQUIRE(mkdtemp(d));
    snprintf(a, sizeof a, "for i in 1 2 3; do cp tests/data/vision/img/photo.jpg %s/f$i.jpg; done", d);
    REQUIRE(system(a) == 0);
    /* 3 frames (odd: the last is repeated) at 2 fps, with an image before it */
    snprintf(a, sizeof a, "generate -m %s --image tests/data/vision/img/rgba.png --video %s --fps 2 -p 'What happens?' -n 3 --stats",
             g_dir, d);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "generated 3 tokens") != NULL);
    snprintf(a, sizeof a, "rm -rf %s", d);
    CHECK(system(a) == 0);
}

/* line-mode chat: two turns (the second reuses the cache), a reset, quit */
TEST(cli_chat_line_mode) {
    SETUP();
    static char out[16384];
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "printf 'Hello there\\nAnd again\\n/reset\\nAfter reset\\n/quit\\n' | %s chat -m %s -n 4 2>&1",
             getenv("OMNI_BIN"), g_dir);
    FILE *f = popen(cmd, "r");
    REQUIRE(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    CHECK(WEXITSTATUS(pclose(f)) == 0);
    int prompts = 0;
    for (const char *p = out; (p = strstr(p, "> ")); p += 2) prompts++;
    CHECK(prompts >= 4);
    CHECK(strstr(out, "(conversation cleared)") != NULL);
}

TEST(cli_media_bad_files) {
    SETUP();
    static char out[16384];
    char a[1024];
    snprintf(a, sizeof a, "generate -m %s --audio /nonexistent.wav -n 2", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 1);
    CHECK(strstr(out, "/nonexistent.wav") != NULL);
    snprintf(a, sizeof a, "generate -m %s --audio tests/data/vision/img/rgba.png -n 2", g_dir); /* not a WAV */
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 1);
    CHECK(strstr(out, "rgba.png") != NULL);
    snprintf(a, sizeof a, "generate -m %s --image tests/data/audio/sine440_1s.wav -n 2", g_dir); /* not an image */
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 1);
    CHECK(strstr(out, "sine440_1s.wav") != NULL);
    /* audio longer than the context allows: one clear line, exit 1 */
    snprintf(a, sizeof a, "generate -m %s --audio tests/data/audio/speech16k.wav -c 32 -n 2", g_dir);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 1);
    CHECK(strstr(out, "context full") != NULL);
    /* a text-only checkpoint has no audio encoder */
    snprintf(a, sizeof a, "generate -m %s/qwen3-moe --audio tests/data/audio/sine440_1s.wav -n 2", FIXTURES);
    CHECK(cli_run(a, out, sizeof out) == 1);
}

TEST(cli_preprocess_writes_processor_tensors) {
    SETUP();
    static char out[4096];
    char a[1024], o[] = "/tmp/omni-pre-XXXXXX";
    int fd = mkstemp(o);
    REQUIRE(fd >= 0);
    close(fd);
    snprintf(a, sizeof a, "preprocess -m %s --image tests/data/vision/img/odd_rgb.png -o %s", g_dir, o);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    st_set *s = NULL;
    omni_err e;
    REQUIRE(st_open_file(o, &s, &e) == 0);
    const st_tensor *pv = st_find(s, "pixel_values"), *g = st_find(s, "image_grid_thw");
    REQUIRE(pv && g && pv->n_dims == 2 && pv->shape[1] == 1536 && g->dtype == ST_I64);
    const int64_t *thw = g->data;
    CHECK(thw[0] == 1 && thw[1] * thw[2] == pv->shape[0]);
    st_close(s);
    snprintf(a, sizeof a, "preprocess --audio tests/data/audio/sine440_1s.wav -o %s", o);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    REQUIRE(st_open_file(o, &s, &e) == 0);
    const st_tensor *f = st_find(s, "input_features"), *msk = st_find(s, "feature_attention_mask");
    REQUIRE(f && msk);
    CHECK(f->shape[0] == 1 && f->shape[1] == 128 && f->shape[2] == 100); /* 1 s = floor(16000/160) frames */
    CHECK(msk->shape[1] == 100);
    st_close(s);
    unlink(o);
    snprintf(a, sizeof a, "preprocess --audio x.wav --image y.png -o %s", o);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 2);
}

/* `omni eval` with audio and image inputs named as the processor names them: the logits of the mixed prompt and the
 * encoder outputs must match the reference (fp32, 1e-4 relative) and position_ids exactly. */
TEST(cli_eval_multimodal_inputs) {
    SETUP();
    char p[600];
    snprintf(p, sizeof p, "%s/qwen3-omni/inputs.safetensors", FIXTURES);
    st_set *in = NULL, *ref = NULL;
    omni_err e;
    REQUIRE(st_open_file(p, &in, &e) == 0);
    snprintf(p, sizeof p, "%s/qwen3-omni/reference.safetensors", FIXTURES);
    REQUIRE(st_open_file(p, &ref, &e) == 0);
    st_writer *w = st_writer_new();
    const struct { const char *from, *to; } names[] = { { "mixed_input_ids", "input_ids" },
                                                         { "input_features_200", "input_features" },
                                                         { "feature_attention_mask_200", "feature_attention_mask" },
                                                         { "pixel_values_1", "pixel_values" },
                                                         { "image_grid_thw_1", "image_grid_thw" } };
    for (unsigned i = 0; i < sizeof names / sizeof *names; i++) {
        const st_tensor *t = st_find(in, names[i].from);
        REQUIRE(t);
        CHECK(st_writer_add(w, names[i].to, t->dtype, t->n_dims, t->shape, t->data, t->nbytes) == 0);
    }
    char ip[] = "/tmp/omni-evin-XXXXXX", op[] = "/tmp/omni-evout-XXXXXX";
    close(mkstemp(ip));
    close(mkstemp(op));
    REQUIRE(st_writer_save(w, ip, &e) == 0);
    st_writer_free(w);
    static char out[4096];
    char a[1200];
    snprintf(a, sizeof a, "eval -m %s -i %s -o %s --backend cpu", g_dir, ip, op);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    st_set *got = NULL;
    REQUIRE(st_open_file(op, &got, &e) == 0);
    const struct { const char *got, *ref; } cmp[] = { { "logits", "mixed_logits" }, { "audio_embeds", "audio_embeds_200" },
                                                       { "image_embeds", "image_embeds_1" }, { "deepstack_0", "deepstack_1_0" },
                                                       { "deepstack_2", "deepstack_1_2" } };
    for (unsigned i = 0; i < sizeof cmp / sizeof *cmp; i++) {
        const st_tensor *x = st_find(got, cmp[i].got), *y = st_find(ref, cmp[i].ref);
        if (!x || !y || x->nbytes != y->nbytes) {
            th_fail(__FILE__, __LINE__, "%s missing or of the wrong size", cmp[i].got);
            continue;
        }
        double md = 0, mx = 0;
        for (size_t k = 0; k < x->nbytes / 4; k++) {
            md = fmax(md, fabs(((const float *)x->data)[k] - ((const float *)y->data)[k]));
            mx = fmax(mx, fabs(((const float *)y->data)[k]));
        }
        printf("    %s: relative %.3g\n", cmp[i].got, md / mx);
        if (md > 1e-4 * mx) th_fail(__FILE__, __LINE__, "%s differs: %g of %g", cmp[i].got, md, mx);
    }
    const st_tensor *pg = st_find(got, "position_ids"), *pr = st_find(ref, "mixed_position_ids");
    CHECK(pg && pr && pg->nbytes == pr->nbytes && memcmp(pg->data, pr->data, pg->nbytes) == 0);
    st_close(got);
    st_close(in);
    st_close(ref);
    unlink(ip);
    unlink(op);
}
