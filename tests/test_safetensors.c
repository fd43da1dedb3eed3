/* test_safetensors.c — safetensors reader/validator/writer: writer round trip, sharded folders, every bad-input case
 * (each written as a small file into a fresh temporary folder), and mutated headers through the fuzz entry point. */
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "safetensors.h"

#define ST_FUZZ_NO_ENTRY
#include "fuzz/fuzz_safetensors.c"

/* ---- helpers ----------------------------------------------------------------------------------------------------- */

static char *tmp_dir(char *buf, size_t cap) {
    const char *t = getenv("TMPDIR");
    snprintf(buf, cap, "%s/omni_st_XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(buf);
}

static void rm_dir(const char *dir) { /* flat folders only, as made here */
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[1024];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            unlink(omni_path_join(p, sizeof p, dir, de->d_name));
    closedir(d);
    rmdir(dir);
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* A safetensors file from header text and data bytes; the header length is written as given (hlen) or, with
 * hlen == UINT64_MAX, as strlen(json). Returns the byte count (into out, cap bytes). */
static size_t make_st(uint8_t *out, size_t cap, const char *json, uint64_t hlen, const void *data, size_t dlen) {
    size_t jl = strlen(json);
    if (8 + jl + dlen > cap) return 0;
    if (hlen == UINT64_MAX) hlen = jl;
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(out + 8, json, jl);
    if (dlen) memcpy(out + 8 + jl, data, dlen);
    return 8 + jl + dlen;
}

static int write_st(const char *dir, const char *name, const char *json, const void *data, size_t dlen) {
    uint8_t buf[4096];
    char path[1024];
    size_t n = make_st(buf, sizeof buf, json, UINT64_MAX, data, dlen);
    return n ? write_bytes(omni_path_join(path, sizeof path, dir, name), buf, n) : -1;
}

/* Writes bytes as <dir>/<label>.safetensors, opens it and checks the error code, that nothing is returned, and that
 * the message names the file (and contains want, if given). st_parse on the same bytes must agree. */
static void expect_bad(const char *dir, const char *label, const uint8_t *bytes, size_t n, int code, const char *want) {
    char name[256], path[1024];
    snprintf(name, sizeof name, "%s.safetensors", label);
    omni_path_join(path, sizeof path, dir, name);
    if (write_bytes(path, bytes, n)) {
        th_fail(__FILE__, __LINE__, "[%s] cannot write %s", label, path);
        return;
    }
    st_set *s = (st_set *)1;
    omni_err e = { { 0 } };
    int rc = st_open_file(path, &s, &e);
    if (rc != code) th_fail(__FILE__, __LINE__, "[%s] code %d, want %d (%s)", label, rc, code, e.msg);
    if (s) th_fail(__FILE__, __LINE__, "[%s] set returned on failure", label);
    if (!strstr(e.msg, name)) th_fail(__FILE__, __LINE__, "[%s] message does not name the file: %s", label, e.msg);
    if (want && !strstr(e.msg, want)) th_fail(__FILE__, __LINE__, "[%s] message lacks '%s': %s", label, want, e.msg);
    omni_err e2 = { { 0 } };
    int rc2 = st_parse(bytes, n, name, &s, &e2);
    if (rc2 != code || strcmp(e.msg + strlen(path) - strlen(name), e2.msg))
        th_fail(__FILE__, __LINE__, "[%s] st_parse disagrees: %d '%s'", label, rc2, e2.msg);
    st_close(s);
}

static void expect_bad_json(const char *dir, const char *label, const char *json, size_t dlen, int code,
                            const char *want) {
    uint8_t buf[4096], data[256] = { 0 };
    size_t n = make_st(buf, sizeof buf, json, UINT64_MAX, data, dlen);
    if (!n) th_fail(__FILE__, __LINE__, "[%s] test file too big", label);
    else expect_bad(dir, label, buf, n, code, want);
}

/* ---- valid files ------------------------------------------------------------------------------------------------- */

TEST(st_dtypes) {
    CHECK_EQ_INT(st_dtype_size(ST_BF16), 2);
    CHECK_EQ_INT(st_dtype_size(ST_F64), 8);
    CHECK_EQ_INT(st_dtype_size(ST_F8_E4M3), 1);
    CHECK_EQ_INT(st_dtype_size((st_dtype)99), 0);
    CHECK(!strcmp(st_dtype_name(ST_F8_E5M2), "F8_E5M2"));
    CHECK(!strcmp(st_dtype_name((st_dtype)-1), "?"));
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        st_dtype t;
        CHECK(st_dtype_parse(st_dtype_name((st_dtype)i), &t) == 0 && t == (st_dtype)i);
    }
    st_dtype t;
    CHECK_EQ_INT(st_dtype_parse("bf16", &t), OMNI_E_UNSUPPORTED); /* case matters in the format */
}

TEST(st_writer_roundtrip) {
    char dbuf[256], path[1024];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir);
    struct {
        const char *name;
        st_dtype t;
        int nd;
        int64_t shape[3];
    } spec[] = {
        { "a.weight", ST_F32, 2, { 2, 3 } }, { "b.bias", ST_BF16, 1, { 5 } },        { "scalar", ST_I64, 0, { 0 } },
        { "empty", ST_U8, 2, { 0, 5 } },     { "h", ST_F16, 3, { 3, 1, 2 } },         { "mask", ST_BOOL, 1, { 3 } },
        { "q", ST_F8_E4M3, 2, { 2, 2 } },    { "quote\"back\\slash\n", ST_I8, 1, { 7 } },
        { "wide", ST_F64, 1, { 3 } },
    };
    const int n = (int)(sizeof spec / sizeof *spec);
    uint8_t bytes[9][64];
    size_t nb[9];
    st_writer *w = st_writer_new();
    REQUIRE(w);
    omni_rng rng = { 7 };
    for (int i = 0; i < n; i++) {
        nb[i] = st_dtype_size(spec[i].t);
        for (int d = 0; d < spec[i].nd; d++) nb[i] *= (size_t)spec[i].shape[d];
        for (size_t j = 0; j < nb[i]; j++) bytes[i][j] = (uint8_t)omni_rng_next(&rng);
        CHECK_EQ_INT(st_writer_add(w, spec[i].name, spec[i].t, spec[i].nd, spec[i].shape, bytes[i], nb[i]), 0);
    }
    /* the writer refuses what the reader would */
    int64_t sh2[2] = { 2, 3 }, neg[1] = { -1 };
    CHECK_EQ_INT(st_writer_add(w, "a.weight", ST_F32, 2, sh2, bytes[0], 24), OMNI_E_ARG);  /* duplicate */
    CHECK_EQ_INT(st_writer_add(w, "c", ST_F32, 2, sh2, bytes[0], 20), OMNI_E_ARG);         /* size mismatch */
    CHECK_EQ_INT(st_writer_add(w, "c", ST_F32, 9, sh2, bytes[0], 24), OMNI_E_ARG);         /* too many dims */
    CHECK_EQ_INT(st_writer_add(w, "c", ST_F32, 1, neg, bytes[0], 0), OMNI_E_ARG);          /* negative dim */
    CHECK_EQ_INT(st_writer_add(w, "__metadata__", ST_U8, 0, NULL, bytes[0], 1), OMNI_E_ARG);
    CHECK_EQ_INT(st_writer_set_metadata(w, "format", "np"), 0);
    CHECK_EQ_INT(st_writer_set_metadata(w, "format", "pt"), 0); /* replaces */
    CHECK_EQ_INT(st_writer_set_metadata(w, "note", "tab\there \"q\""), 0);
    omni_err e = { { 0 } };
    omni_path_join(path, sizeof path, dir, "model.safetensors");
    CHECK_EQ_INT(st_writer_save(w, path, &e), 0);
    memset(bytes[0], 0, sizeof bytes[0]); /* st_writer_add copied: the file must not see this */
    st_writer_free(w);

    size_t flen = 0;
    char *raw = omni_read_file(path, &flen, &e);
    REQUIRE(raw);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (uint8_t)raw[i];
    CHECK_EQ_INT(hlen % 8, 0); /* padded, so tensors can be aligned */
    size_t total = 0;
    for (int i = 0; i < n; i++) total += nb[i];
    CHECK_EQ_INT(flen, 8 + hlen + total); /* contiguous, no gaps: what the reference library demands */
    free(raw);

    st_set *s = NULL;
    REQUIRE(st_open_dir(dir, &s, &e) == 0);
    CHECK_EQ_INT(st_count(s), n);
    CHECK(s && st_metadata(s, "format") && !strcmp(st_metadata(s, "format"), "pt"));
    CHECK(st_metadata(s, "note") && !strcmp(st_metadata(s, "note"), "tab\there \"q\""));
    CHECK(st_metadata(s, "missing") == NULL);
    CHECK(st_find(s, "nope") == NULL && st_get(s, n) == NULL && st_get(s, -1) == NULL);
    omni_rng rng2 = { 7 };
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_find(s, spec[i].name);
        if (!t) {
            th_fail(__FILE__, __LINE__, "tensor '%s' missing", spec[i].name);
            continue;
        }
        CHECK(!strcmp(t->name, spec[i].name));
        CHECK_EQ_INT(t->dtype, spec[i].t);
        CHECK_EQ_INT(t->n_dims, spec[i].nd);
        for (int d = 0; d < spec[i].nd; d++) CHECK_EQ_INT(t->shape[d], spec[i].shape[d]);
        CHECK_EQ_INT(t->nbytes, nb[i]);
        CHECK(!strcmp(t->file, path));
        CHECK_EQ_INT((uintptr_t)t->data % st_dtype_size(t->dtype), 0); /* aligned to the element size */
        uint8_t want[64];
        for (size_t j = 0; j < nb[i]; j++) want[j] = (uint8_t)omni_rng_next(&rng2);
        CHECK(nb[i] == 0 || memcmp(t->data, want, nb[i]) == 0);
    }
    st_close(s);
    st_close(NULL);
    st_writer_free(NULL);
    rm_dir(dir);
}

TEST(st_many_tensors) { /* hash table growth; lookups by name stay exact */
    char dbuf[256], path[1024];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir);
    st_writer *w = st_writer_new();
    REQUIRE(w);
    enum { N = 3000 };
    static int32_t vals[N];
    char name[64];
    int64_t one = 1;
    for (int i = 0; i < N; i++) {
        vals[i] = i * 7 - 5;
        snprintf(name, sizeof name, "model.layers.%d.weight", i);
        REQUIRE(st_writer_add_ref(w, name, ST_I32, 1, &one, &vals[i], 4) == 0);
    }
    omni_err e = { { 0 } };
    REQUIRE(st_writer_save(w, omni_path_join(path, sizeof path, dir, "m.safetensors"), &e) == 0);
    st_writer_free(w);
    st_set *s = NULL;
    REQUIRE(st_open_file(path, &s, &e) == 0);
    CHECK_EQ_INT(st_count(s), N);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "model.layers.%d.weight", i);
        const st_tensor *t = st_find(s, name);
        int32_t v;
        if (!t || t->nbytes != 4) { bad++; continue; }
        memcpy(&v, t->data, 4);
        bad += v != i * 7 - 5;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(st_find(s, "model.layers.3000.weight") == NULL);
    st_close(s);
    rm_dir(dir);
}

/* Two shards + index, as save_pretrained writes them. */
static const char *k_index =
    "{\"metadata\":{\"total_size\":40},\"weight_map\":{"
    "\"x.a\":\"model-00001-of-00002.safetensors\",\"x.b\":\"model-00001-of-00002.safetensors\","
    "\"y.c\":\"model-00002-of-00002.safetensors\"}}";

static int write_shards(const char *dir) {
    float a[4] = { 1, 2, 3, 4 }, c[5] = { 9, 8, 7, 6, 5 };
    uint16_t b[2] = { 0x3f80, 0xbf80 };
    uint8_t d1[20], d2[20];
    memcpy(d1, a, 16);
    memcpy(d1 + 16, b, 4);
    memcpy(d2, c, 20);
    char path[1024];
    int rc = write_st(dir, "model-00001-of-00002.safetensors",
                      "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"x.a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"x.b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[16,20]}}",
                      d1, 20);
    rc |= write_st(dir, "model-00002-of-00002.safetensors",
                   "{\"y.c\":{\"dtype\":\"F32\",\"shape\":[5],\"data_offsets\":[0,20]}}   ", d2, 20);
    rc |= write_bytes(omni_path_join(path, sizeof path, dir, "model.safetensors.index.json"), k_index, strlen(k_index));
    return rc;
}

TEST(st_sharded_dir) {
    char dbuf[256], path[1024];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir && write_shards(dir) == 0);
    st_set *s = NULL;
    omni_err e = { { 0 } };
    int rc = st_open_dir(dir, &s, &e);
    if (rc) th_fail(__FILE__, __LINE__, "%s", e.msg);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(st_count(s), 3);
    const st_tensor *a = st_find(s, "x.a"), *b = st_find(s, "x.b"), *c = st_find(s, "y.c");
    REQUIRE(a && b && c);
    CHECK(!strcmp(a->file, omni_path_join(path, sizeof path, dir, "model-00001-of-00002.safetensors")));
    CHECK(!strcmp(b->file, path));
    CHECK(!strcmp(c->file, omni_path_join(path, sizeof path, dir, "model-00002-of-00002.safetensors")));
    float f[5];
    memcpy(f, a->data, 16);
    CHECK(f[0] == 1 && f[3] == 4);
    memcpy(f, c->data, 20);
    CHECK(f[0] == 9 && f[4] == 5);
    uint16_t h[2];
    memcpy(h, b->data, 4);
    CHECK_NEAR(omni_bf16_to_f32(h[1]), -1.0, 0);
    CHECK(st_metadata(s, "format") && !strcmp(st_metadata(s, "format"), "pt")); /* from the first shard */
    st_close(s);

    /* the index wins over a stray model.safetensors */
    REQUIRE(write_st(dir, "model.safetensors", "{}", NULL, 0) == 0);
    REQUIRE(st_open_dir(dir, &s, &e) == 0);
    CHECK_EQ_INT(st_count(s), 3);
    st_close(s);
    rm_dir(dir);
}

/* ---- bad single files -------------------------------------------------------------------------------------------- */

TEST(st_bad_truncated) {
    char dbuf[256];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir);
    uint8_t buf[512], zeros[64] = { 0 };
    expect_bad(dir, "empty", buf, 0, OMNI_E_IO, "shorter");
    memset(buf, 0, 8);
    expect_bad(dir, "five_bytes", buf, 5, OMNI_E_IO, "shorter");
    /* header length 1000 but only 30 bytes follow */
    size_t n = make_st(buf, sizeof buf, "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],", 1000, NULL, 0);
    expect_bad(dir, "hlen_past_eof", buf, n, OMNI_E_IO, "past the end");
    n = make_st(buf, sizeof buf, "{}", (uint64_t)1 << 62, NULL, 0);
    expect_bad(dir, "hlen_absurd", buf, n, OMNI_E_FORMAT, "absurd");
    n = make_st(buf, sizeof buf, "{}", UINT64_MAX - 1, NULL, 0);
    expect_bad(dir, "hlen_wraps", buf, n, OMNI_E_FORMAT, "absurd");
    n = make_st(buf, sizeof buf, "", UINT64_MAX, NULL, 0);
    expect_bad(dir, "hlen_zero", buf, n, OMNI_E_FORMAT, "empty");
    /* a shard cut short in the data section (interrupted download) */
    n = make_st(buf, sizeof buf,
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[16,48]}}",
                UINT64_MAX, zeros, 48);
    expect_bad(dir, "truncated_shard", buf, n - 10, OMNI_E_IO, "'b'");
    rm_dir(dir);
}

TEST(st_bad_json) {
    char dbuf[256];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir);
    expect_bad_json(dir, "not_json", "{\"a\": {\"dtype\": \"F32\",", 0, OMNI_E_FORMAT, "JSON");
    expect_bad_json(dir, "garbage", "\x89PNG\r\n\x1a\n", 0, OMNI_E_FORMAT, "JSON");
    expect_bad_json(dir, "not_object", "[1,2,3]", 0, OMNI_E_FORMAT, "not a JSON object");
    expect_bad_json(dir, "trailing", "{} x", 0, OMNI_E_FORMAT, "after the header");
    expect_bad_json(dir, "two_objects", "{}{}", 0, OMNI_E_FORMAT, "after the header");
    uint8_t buf[64];
    size_t n = make_st(buf, sizeof buf, "{}  ", UINT64_MAX, NULL, 0);
    buf[8 + 2] = 0; /* NUL inside the header: cJSON would stop there */
    expect_bad(dir, "nul_in_header", buf, n, OMNI_E_FORMAT, "after the header");
    expect_bad_json(dir, "entry_not_object", "{\"a\":[1,2]}", 0, OMNI_E_FORMAT, "'a'");
    expect_bad_json(dir, "entry_string", "{\"a\":\"F32\"}", 0, OMNI_E_FORMAT, "'a'");
    expect_bad_json(dir, "meta_not_object", "{\"__metadata__\":[]}", 0, OMNI_E_FORMAT, "__metadata__");
    expect_bad_json(dir, "meta_not_string", "{\"__metadata__\":{\"total\":5}}", 0, OMNI_E_FORMAT, "total");
    expect_bad_json(dir, "meta_twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, OMNI_E_FORMAT, "duplicate");
    rm_dir(dir);
}

TEST(st_bad_fields) {
    char dbuf[256];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir);
#define ENT(dt, shape, off) "{\"t\":{\"dtype\":" dt ",\"shape\":" shape ",\"data_offsets\":" off "}}"
    expect_bad_json(dir, "dtype_unknown", ENT("\"F128\"", "[1]", "[0,16]"), 16, OMNI_E_UNSUPPORTED, "F128");
    expect_bad_json(dir, "dtype_number", ENT("4", "[1]", "[0,4]"), 4, OMNI_E_FORMAT, "dtype");
    expect_bad_json(dir, "dtype_missing", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, OMNI_E_FORMAT, "dtype");
    expect_bad_json(dir, "shape_missing", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, OMNI_E_FORMAT,
                    "shape");
    expect_bad_json(dir, "shape_negative", ENT("\"F32\"", "[-1]", "[0,4]"), 4, OMNI_E_FORMAT, "shape[0]");
    expect_bad_json(dir, "shape_fraction", ENT("\"F32\"", "[1,1.5]", "[0,4]"), 4, OMNI_E_FORMAT, "shape[1]");
    expect_bad_json(dir, "shape_string", ENT("\"F32\"", "[\"1\"]", "[0,4]"), 4, OMNI_E_FORMAT, "shape[0]");
    expect_bad_json(dir, "shape_not_list", ENT("\"F32\"", "4", "[0,4]"), 4, OMNI_E_FORMAT, "shape");
    expect_bad_json(dir, "shape_9_dims", ENT("\"F32\"", "[1,1,1,1,1,1,1,1,1]", "[0,4]"), 4, OMNI_E_FORMAT, "dims");
    expect_bad_json(dir, "shape_huge", ENT("\"F32\"", "[1e300]", "[0,4]"), 4, OMNI_E_FORMAT, "shape[0]");
    expect_bad_json(dir, "shape_overflow", ENT("\"F64\"", "[4294967296,4294967296]", "[0,8]"), 8, OMNI_E_FORMAT,
                    "overflow");
    expect_bad_json(dir, "offsets_missing", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, OMNI_E_FORMAT,
                    "data_offsets");
    expect_bad_json(dir, "offsets_three", ENT("\"F32\"", "[1]", "[0,4,8]"), 8, OMNI_E_FORMAT, "data_offsets");
    expect_bad_json(dir, "offsets_one", ENT("\"F32\"", "[1]", "[4]"), 8, OMNI_E_FORMAT, "data_offsets");
    expect_bad_json(dir, "offsets_negative", ENT("\"F32\"", "[1]", "[-4,0]"), 8, OMNI_E_FORMAT, "data_offsets");
    expect_bad_json(dir, "offsets_reversed", ENT("\"F32\"", "[1]", "[8,4]"), 8, OMNI_E_FORMAT, "begin 8 > end 4");
    expect_bad_json(dir, "offsets_out_of_bounds", ENT("\"F32\"", "[4]", "[0,16]"), 12, OMNI_E_IO, "past the data");
    expect_bad_json(dir, "offsets_far_out", ENT("\"U8\"", "[4]", "[9007199254740000,9007199254740004]"), 12,
                    OMNI_E_IO, "past the data");
    expect_bad_json(dir, "size_mismatch", ENT("\"F32\"", "[2,3]", "[0,20]"), 24, OMNI_E_FORMAT, "24 bytes");
    expect_bad_json(dir, "size_mismatch_dtype", ENT("\"BF16\"", "[4]", "[0,16]"), 16, OMNI_E_FORMAT, "BF16");
#undef ENT
    expect_bad_json(dir, "overlap",
                    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                    20, OMNI_E_FORMAT, "overlap");
    expect_bad_json(dir, "overlap_same",
                    "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
                    4, OMNI_E_FORMAT, "overlap");
    expect_bad_json(dir, "overlap_unsorted",
                    "{\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"U8\",\"shape\":[6],\"data_offsets\":[3,9]}}",
                    12, OMNI_E_FORMAT, "overlap");
    expect_bad_json(dir, "duplicate",
                    "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                    8, OMNI_E_FORMAT, "duplicate tensor 'a'");

    /* what stays legal: gaps, unused bytes at the end, empty tensors anywhere, scalars, padding spaces */
    uint8_t buf[512], data[32] = { 0 };
    size_t n = make_st(buf, sizeof buf,
                       "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                       "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[2,2]},"
                       "\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[8,16]},"
                       "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[16,17],\"extra\":1}}\n   ",
                       UINT64_MAX, data, 32);
    st_set *s = NULL;
    omni_err e = { { 0 } };
    CHECK_EQ_INT(st_parse(buf, n, "ok.safetensors", &s, &e), 0);
    CHECK_EQ_INT(st_count(s), 4);
    const st_tensor *sc = st_find(s, "s");
    CHECK(sc && sc->n_dims == 0 && sc->nbytes == 8);
    st_close(s);
    rm_dir(dir);
}

/* ---- bad sharded folders ----------------------------------------------------------------------------------------- */

static void expect_dir_bad(const char *dir, const char *label, int code, const char *want1, const char *want2) {
    st_set *s = (st_set *)1;
    omni_err e = { { 0 } };
    int rc = st_open_dir(dir, &s, &e);
    if (rc != code) th_fail(__FILE__, __LINE__, "[%s] code %d, want %d (%s)", label, rc, code, e.msg);
    if (s) th_fail(__FILE__, __LINE__, "[%s] set returned on failure", label);
    if (want1 && !strstr(e.msg, want1)) th_fail(__FILE__, __LINE__, "[%s] message lacks '%s': %s", label, want1, e.msg);
    if (want2 && !strstr(e.msg, want2)) th_fail(__FILE__, __LINE__, "[%s] message lacks '%s': %s", label, want2, e.msg);
}

static void put_index(const char *dir, const char *json) {
    char path[1024];
    if (write_bytes(omni_path_join(path, sizeof path, dir, "model.safetensors.index.json"), json, strlen(json)))
        th_fail(__FILE__, __LINE__, "cannot write index");
}

TEST(st_bad_shards) {
    char dbuf[256], path[1024];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir);
    expect_dir_bad(dir, "empty_dir", OMNI_E_IO, dir, "model.safetensors");
    REQUIRE(write_shards(dir) == 0);

    /* a shard named by the index is missing */
    put_index(dir, "{\"weight_map\":{\"x.a\":\"model-00001-of-00002.safetensors\","
                   "\"y.c\":\"model-00003-of-00002.safetensors\"}}");
    expect_dir_bad(dir, "missing_shard", OMNI_E_IO, "model-00003-of-00002.safetensors", "does not exist");

    /* a tensor is not in the shard the index names */
    put_index(dir, "{\"weight_map\":{\"x.a\":\"model-00001-of-00002.safetensors\","
                   "\"x.zzz\":\"model-00002-of-00002.safetensors\"}}");
    expect_dir_bad(dir, "tensor_missing", OMNI_E_TENSOR, "'x.zzz'", "model-00002-of-00002.safetensors");
    put_index(dir, "{\"weight_map\":{\"x.a\":\"model-00002-of-00002.safetensors\","
                   "\"y.c\":\"model-00001-of-00002.safetensors\"}}");
    expect_dir_bad(dir, "tensor_wrong_shard", OMNI_E_TENSOR, "'x.a'", "model-00002-of-00002.safetensors");

    /* path traversal and other non-plain names */
    const char *evil[] = { "../model-00001-of-00002.safetensors", "/etc/passwd", "sub/x.safetensors", "..", "" ,
                           "..\\\\x.safetensors" };
    for (unsigned i = 0; i < sizeof evil / sizeof *evil; i++) {
        char json[512];
        snprintf(json, sizeof json, "{\"weight_map\":{\"x.a\":\"%s\"}}", evil[i]);
        put_index(dir, json);
        expect_dir_bad(dir, json, OMNI_E_FORMAT, "model.safetensors.index.json", "plain file name");
    }

    /* malformed index */
    put_index(dir, "{\"weight_map\":");
    expect_dir_bad(dir, "index_bad_json", OMNI_E_FORMAT, "model.safetensors.index.json", "JSON");
    put_index(dir, "{\"metadata\":{}}");
    expect_dir_bad(dir, "index_no_map", OMNI_E_FORMAT, "model.safetensors.index.json", "weight_map");
    put_index(dir, "{\"weight_map\":{}}");
    expect_dir_bad(dir, "index_empty_map", OMNI_E_FORMAT, "model.safetensors.index.json", "empty");
    put_index(dir, "{\"weight_map\":{\"x.a\":3}}");
    expect_dir_bad(dir, "index_value_number", OMNI_E_FORMAT, "model.safetensors.index.json", "'x.a'");

    /* a bad shard: the error names the shard; a tensor in two shards */
    put_index(dir, k_index);
    uint8_t junk[5] = { 1, 2, 3, 4, 5 };
    REQUIRE(write_bytes(omni_path_join(path, sizeof path, dir, "model-00002-of-00002.safetensors"), junk, 5) == 0);
    expect_dir_bad(dir, "truncated_shard", OMNI_E_IO, "model-00002-of-00002.safetensors", "shorter");
    float c[5] = { 0 };
    REQUIRE(write_st(dir, "model-00002-of-00002.safetensors",
                     "{\"y.c\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                     "\"x.b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[16,20]}}",
                     c, 20) == 0);
    expect_dir_bad(dir, "dup_across_shards", OMNI_E_FORMAT, "'x.b'", "model-00001-of-00002.safetensors");

    /* a folder named like the index is not the index */
    rm_dir(dir);
    REQUIRE(mkdir(dir, 0700) == 0);
    REQUIRE(mkdir(omni_path_join(path, sizeof path, dir, "model.safetensors"), 0700) == 0);
    expect_dir_bad(dir, "dir_not_file", OMNI_E_IO, dir, NULL);
    rmdir(path);
    rm_dir(dir);
}

TEST(st_open_errors) {
    st_set *s = (st_set *)1;
    omni_err e = { { 0 } };
    CHECK_EQ_INT(st_open_file("tests/data/no-such-file.safetensors", &s, &e), OMNI_E_IO);
    CHECK(s == NULL && strstr(e.msg, "no-such-file.safetensors"));
    CHECK_EQ_INT(st_open_file("tests", &s, &e), OMNI_E_IO); /* a folder */
    CHECK(strstr(e.msg, "not a regular file"));
    CHECK(st_find(NULL, "a") == NULL && st_count(NULL) == 0 && st_metadata(NULL, "format") == NULL);
    CHECK_EQ_INT(st_open_file(NULL, &s, &e), OMNI_E_ARG);
    CHECK_EQ_INT(st_open_dir(NULL, &s, &e), OMNI_E_ARG);
    CHECK_EQ_INT(st_parse(NULL, 0, "x", NULL, &e), OMNI_E_ARG);
    CHECK_EQ_INT(st_parse(NULL, 0, NULL, &s, &e), OMNI_E_IO); /* no bytes: too short, named "(memory)" */
    CHECK(s == NULL && strstr(e.msg, "(memory)"));
}

/* ---- mutated headers through the fuzz entry point ---------------------------------------------------------------- */

static size_t mutate(omni_rng *r, uint8_t *buf, size_t n, size_t cap) {
    static const char *tokens[] = { "{", "}", "[", "]", ",", ":", "\"", "0", "-1", "1e300", "4294967296", "1.5",
                                    "null", "\"F32\"", "\"BF16\"", "\"__metadata__\"", "\"dtype\"", "\"shape\"",
                                    "\"data_offsets\"", "[0,4]", "[]", "{}", "\\u0000", "18446744073709551616",
                                    "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}" };
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    size_t hend = (hlen <= n - 8) ? 8 + (size_t)hlen : n; /* mutate mostly inside the header */
    size_t pos = 8 + (size_t)(omni_rng_next(r) % (hend > 8 ? hend - 8 : 1));
    int64_t delta = 0; /* header bytes added or removed */
    switch (omni_rng_next(r) % 7) {
    case 0: /* flip bits */
        for (int k = 0; k < 1 + (int)(omni_rng_next(r) % 4); k++)
            buf[8 + omni_rng_next(r) % (n - 8)] ^= (uint8_t)(1u << (omni_rng_next(r) % 8));
        break;
    case 1: /* a JSON-significant byte */
        if (pos < n) buf[pos] = (uint8_t)"{}[],:\"0123456789-.eE \\ntu"[omni_rng_next(r) % 26];
        break;
    case 2: /* truncate */
        n = (size_t)(omni_rng_next(r) % (n + 1));
        break;
    case 3: /* another header length */
        if (omni_rng_next(r) & 1) hlen = hlen + (omni_rng_next(r) % 17) - 8; /* near the true one */
        else hlen = omni_rng_next(r) >> (omni_rng_next(r) % 64);
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
        break;
    case 4: { /* delete a span */
        size_t len = 1 + (size_t)(omni_rng_next(r) % 12);
        if (pos + len <= n) {
            memmove(buf + pos, buf + pos + len, n - pos - len);
            n -= len;
            if (pos < hend) delta = -(int64_t)len;
        }
        break;
    }
    case 5: { /* insert a token */
        const char *t = tokens[omni_rng_next(r) % (sizeof tokens / sizeof *tokens)];
        size_t len = strlen(t);
        if (n + len <= cap && pos <= n) {
            memmove(buf + pos + len, buf + pos, n - pos);
            memcpy(buf + pos, t, len);
            n += len;
            if (pos < hend) delta = (int64_t)len;
        }
        break;
    }
    default: /* change a digit (shapes and offsets) */
        for (size_t k = pos; k < hend; k++)
            if (buf[k] >= '0' && buf[k] <= '9') {
                buf[k] = (uint8_t)('0' + omni_rng_next(r) % 10);
                break;
            }
    }
    if (delta && omni_rng_next(r) % 8) { /* mostly keep the length consistent, so the JSON parser sees the edit */
        hlen = (uint64_t)((int64_t)hlen + delta);
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
    }
    return n;
}

TEST(st_fuzz_mutations) {
    char dbuf[256], path[1024];
    const char *dir = tmp_dir(dbuf, sizeof dbuf);
    REQUIRE(dir);
    /* seeds: a writer file with metadata and several dtypes, and a hand-written one with padding */
    st_writer *w = st_writer_new();
    REQUIRE(w);
    uint8_t d[64] = { 0 };
    int64_t s23[2] = { 2, 3 }, s4[1] = { 4 }, s0[2] = { 0, 7 };
    st_writer_add(w, "model.embed.weight", ST_BF16, 2, s23, d, 12);
    st_writer_add(w, "model.norm.weight", ST_F32, 1, s4, d, 16);
    st_writer_add(w, "model.empty", ST_I8, 2, s0, d, 0);
    st_writer_add(w, "model.scale", ST_F64, 0, NULL, d, 8);
    st_writer_set_metadata(w, "format", "pt");
    omni_err e = { { 0 } };
    REQUIRE(st_writer_save(w, omni_path_join(path, sizeof path, dir, "seed.safetensors"), &e) == 0);
    st_writer_free(w);
    size_t seed1_n = 0;
    char *seed1 = omni_read_file(path, &seed1_n, &e);
    REQUIRE(seed1);
    uint8_t seed2[512];
    size_t seed2_n = make_st(seed2, sizeof seed2,
                             "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                             "\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[4,12]}}    ",
                             UINT64_MAX, d, 12);
    CHECK_EQ_INT(st_fuzz_one((const uint8_t *)seed1, seed1_n), 0);
    CHECK_EQ_INT(st_fuzz_one(seed2, seed2_n), 0);

    enum { CAP = 1024, ROUNDS = 800 };
    uint8_t *buf = malloc(CAP);
    REQUIRE(buf);
    omni_rng r = { 12345 };
    int ok = 0, failed = 0, broken = 0;
    for (int it = 0; it < ROUNDS; it++) {
        size_t n;
        if (it % 2) n = seed1_n, memcpy(buf, seed1, n);
        else n = seed2_n, memcpy(buf, seed2, n);
        int steps = 1 + (int)(omni_rng_next(&r) % 4);
        for (int k = 0; k < steps && n > 8; k++) n = mutate(&r, buf, n, CAP);
        /* an exact-size heap copy, so ASan sees any read past the end */
        uint8_t *exact = malloc(n ? n : 1);
        REQUIRE(exact);
        memcpy(exact, buf, n);
        if (st_fuzz_one(exact, n)) broken++;
        st_set *s = NULL;
        if (st_parse(exact, n, "m", &s, NULL) == 0) ok++; /* a NULL error buffer is allowed */
        else failed++;
        st_close(s);
        free(exact);
    }
    for (int it = 0; it < 200; it++) { /* plain random bytes behind a plausible length */
        size_t n = 8 + (size_t)(omni_rng_next(&r) % 200);
        uint8_t *exact = malloc(n);
        REQUIRE(exact);
        for (size_t k = 0; k < n; k++) exact[k] = (uint8_t)omni_rng_next(&r);
        uint64_t hl = omni_rng_next(&r) % (n - 7);
        for (int i = 0; i < 8; i++) exact[i] = (uint8_t)(hl >> (8 * i));
        if (n > 8) exact[8] = '{';
        broken += st_fuzz_one(exact, n) != 0;
        free(exact);
    }
    CHECK_EQ_INT(broken, 0);
    /* the mutations must reach both outcomes, or the test exercises nothing */
    CHECK(ok > 10);
    CHECK(failed > 200);
    free(buf);
    free(seed1);
    rm_dir(dir);
}

/* ---- files written by the reference library ---------------------------------------------------------------------- */

TEST(st_fixture_files) { /* every .safetensors of the unpacked fixtures (made by safetensors' save_file) must load */
    DIR *top = opendir(FIXTURES);
    if (!top) SKIP("no fixtures unpacked");
    int files = 0;
    struct dirent *de, *fe;
    char sub[1024], path[1024];
    while ((de = readdir(top))) {
        if (de->d_name[0] == '.') continue;
        DIR *d = opendir(omni_path_join(sub, sizeof sub, FIXTURES, de->d_name));
        if (!d) continue;
        while ((fe = readdir(d))) {
            size_t l = strlen(fe->d_name);
            if (l < 12 || strcmp(fe->d_name + l - 12, ".safetensors")) continue;
            st_set *s = NULL;
            omni_err e = { { 0 } };
            int rc = st_open_file(omni_path_join(path, sizeof path, sub, fe->d_name), &s, &e);
            if (rc) th_fail(__FILE__, __LINE__, "%s", e.msg);
            else CHECK(st_count(s) > 0);
            st_close(s);
            files++;
        }
        closedir(d);
        st_set *s = NULL;
        omni_err e = { { 0 } };
        if (omni_file_exists(omni_path_join(path, sizeof path, sub, "model.safetensors")) &&
            st_open_dir(sub, &s, &e) != 0)
            th_fail(__FILE__, __LINE__, "%s", e.msg);
        st_close(s);
    }
    closedir(top);
    if (!files) SKIP("no .safetensors in the fixtures");
}
