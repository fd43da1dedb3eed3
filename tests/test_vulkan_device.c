/* test_vulkan_device.c — the Vulkan back-end's plumbing: device listing and selection, `omni devices`, buffers
 * (sub-allocation, dedicated blocks, staging uploads and downloads larger than the staging buffer, wrap_host),
 * ordering of queued work across submissions (hazard-tracked barriers), sticky errors, the validation layer.
 * Tests skip when there is no Vulkan device. */
#include <stdio.h>
#include <sys/wait.h>

#include "test_vulkan.h"

TEST(vk_list_devices) {
    ob_vk_device_info info[8];
    char err[256] = "";
    int n = ob_vulkan_list_devices(info, 8, err, sizeof err);
    CHECK(n >= 0);
    if (n <= 0) SKIP("no Vulkan device");
    for (int i = 0; i < n && i < 8; i++) {
        CHECK(info[i].name[0] != 0);
        CHECK(info[i].n_heaps > 0);
        CHECK(info[i].subgroup_size > 0);
        CHECK(info[i].max_push >= 128);
    }
    int d = ob_vulkan_default_device();
    CHECK(d >= 0 && d < n);
    /* an index past the list is an error naming it */
    ob_backend *b = ob_vulkan_new(n, err, sizeof err);
    CHECK(b == NULL);
    CHECK(strstr(err, "does not exist") != NULL);
}

TEST(vk_omni_devices_command) {
    const char *bin = getenv("OMNI_BIN");
    if (!bin) SKIP("OMNI_BIN not set (make test sets it)");
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s devices 2>&1", bin);
    FILE *f = popen(cmd, "r");
    REQUIRE(f != NULL);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    int st = pclose(f);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ob_vk_device_info info[8];
    int nd = ob_vulkan_list_devices(info, 8, NULL, 0);
    if (nd <= 0) CHECK(strstr(out, "no Vulkan device found; omni will run on the CPU") != NULL);
    else {
        CHECK(strstr(out, info[0].name) != NULL);
        CHECK(strstr(out, "subgroup:") != NULL);
        CHECK(strstr(out, "compute:") != NULL);
        CHECK(strstr(out, "default") != NULL);
    }
    snprintf(cmd, sizeof cmd, "%s devices --help 2>&1 && %s devices --bogus >/dev/null 2>&1; echo rc=$?", bin, bin);
    f = popen(cmd, "r");
    REQUIRE(f != NULL);
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    pclose(f);
    CHECK(strstr(out, "usage: omni devices") != NULL);
    CHECK(strstr(out, "rc=2") != NULL);
}

TEST(vk_validation_layer_on) {
    TV_OPEN(e);
    /* the layer is a test dependency (vulkan-validationlayers); when installed it must be active */
    FILE *f = fopen("/usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json", "r");
    if (f) {
        fclose(f);
        CHECK(ob_vulkan_validation_active(e.vk));
    }
    tv_close(&e);
}

/* uploads and downloads of more than the staging buffer, at odd offsets and sizes */
TEST(vk_staging_round_trip) {
    TV_OPEN(e);
    ob_backend *b = e.vk;
    size_t n = (size_t)20 << 20; /* 20 MiB: more than one staging half on every device */
    uint8_t *src = malloc(n), *dst = malloc(n);
    REQUIRE(src && dst);
    omni_rng r = { 5 };
    for (size_t i = 0; i < n; i += 8) {
        uint64_t v = omni_rng_next(&r);
        memcpy(src + i, &v, 8);
    }
    ob_buf *buf = b->ops->alloc(b, n + 64);
    REQUIRE(buf != NULL);
    CHECK_EQ_INT(b->ops->upload(b, buf, 3, src, n - 5), 0);
    memset(dst, 0, n);
    CHECK_EQ_INT(b->ops->download(b, buf, 3, dst, n - 5), 0);
    CHECK(memcmp(src, dst, n - 5) == 0);
    /* many small uploads queued without a sync, then one download */
    for (int i = 0; i < 1000; i++) CHECK_EQ_INT(b->ops->upload(b, buf, (size_t)i * 7, src + i, 7), 0);
    CHECK_EQ_INT(b->ops->download(b, buf, 0, dst, 7000), 0);
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= memcmp(dst + i * 7, src + i, 7) == 0;
    CHECK(ok);
    /* wrap_host copies */
    int copied = 0;
    ob_buf *w = b->ops->wrap_host(b, src, 4096, &copied);
    REQUIRE(w != NULL);
    CHECK_EQ_INT(copied, 1);
    CHECK_EQ_INT(b->ops->download(b, w, 0, dst, 4096), 0);
    CHECK(memcmp(src, dst, 4096) == 0);
    CHECK(b->ops->host_ptr(b, w) == NULL);
    /* out-of-range transfers fail cleanly */
    CHECK(b->ops->upload(b, w, 4000, src, 200) != 0);
    b->failed = 0; /* the range error is sticky; clear it for the rest of the test */
    b->ops->buf_free(b, w);
    b->ops->buf_free(b, buf);
    free(src);
    free(dst);
    tv_close(&e);
}

/* allocations of many sizes, freed in a scrambled order, big ones in dedicated blocks; contents stay intact */
TEST(vk_alloc_churn) {
    TV_OPEN(e);
    ob_backend *b = e.vk;
    enum { N = 64 };
    ob_buf *bufs[N] = { 0 };
    size_t sizes[N];
    omni_rng r = { 3 };
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            if (bufs[i] && omni_rng_uniform(&r) < 0.5f) continue;
            if (bufs[i]) b->ops->buf_free(b, bufs[i]);
            sizes[i] = i == 7 ? (size_t)70 << 20 : 1 + (size_t)(omni_rng_next(&r) % 100000);
            bufs[i] = b->ops->alloc(b, sizes[i]);
            REQUIRE(bufs[i] != NULL);
            uint32_t tag[4] = { (uint32_t)i, (uint32_t)round, 0xabcdef01u, (uint32_t)sizes[i] };
            size_t tb = sizes[i] < sizeof tag ? sizes[i] : sizeof tag;
            CHECK_EQ_INT(b->ops->upload(b, bufs[i], sizes[i] - tb, tag, tb), 0);
        }
        for (int i = 0; i < N; i += 3) { /* free every third, reallocate later */
            b->ops->buf_free(b, bufs[i]);
            bufs[i] = NULL;
        }
        for (int i = 0; i < N; i++) {
            if (!bufs[i]) continue;
            uint32_t tag[4];
            size_t tb = sizes[i] < sizeof tag ? sizes[i] : sizeof tag;
            CHECK_EQ_INT(b->ops->download(b, bufs[i], sizes[i] - tb, tag, tb), 0);
            if (tb == sizeof tag) CHECK(tag[2] == 0xabcdef01u && tag[0] == (uint32_t)i);
        }
    }
    for (int i = 0; i < N; i++) b->ops->buf_free(b, bufs[i]);
    b->ops->buf_free(b, NULL);
    tv_close(&e);
}

/* Dependent work queued across many submissions: y += x 300 times with a submit every 7 commands, a buffer
 * re-uploaded between uses (write after read through the staging copy), and copies feeding adds. */
TEST(vk_ordering_across_submits) {
    setenv("OMNI_VK_MAX_OPS", "7", 1);
    TV_OPEN(e);
    ob_backend *b = e.vk;
    enum { N = 1031 };
    float ones[N], twos[N], out[N];
    for (int i = 0; i < N; i++) ones[i] = 1.0f, twos[i] = 2.0f;
    ob_buf *x = b->ops->alloc(b, sizeof ones), *y = b->ops->alloc(b, sizeof ones), *z = b->ops->alloc(b, sizeof ones);
    REQUIRE(x && y && z);
    b->ops->upload(b, x, 0, ones, sizeof ones);
    b->ops->upload(b, y, 0, twos, sizeof twos);
    for (int i = 0; i < 300; i++) {
        b->ops->add(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, N);
        if (i == 100) b->ops->upload(b, x, 0, twos, sizeof twos); /* from here on x = 2 */
        if (i == 200) {                                            /* z = y, then y += z: doubles y */
            b->ops->copy(b, (ob_ptr){ y, 0 }, (ob_ptr){ z, 0 }, sizeof ones);
            b->ops->add(b, (ob_ptr){ z, 0 }, (ob_ptr){ y, 0 }, N);
        }
    }
    CHECK_EQ_INT(b->ops->download(b, y, 0, out, sizeof out), 0);
    /* 2 + 101·1 = 103; +100·2 = 303; doubled = 606; +99·2 = 804 */
    int bad = 0;
    for (int i = 0; i < N; i++) bad += out[i] != 804.0f;
    CHECK_EQ_INT(bad, 0);
    if (bad) fprintf(stderr, "    y[0] = %g\n", out[0]);
    b->ops->buf_free(b, x);
    b->ops->buf_free(b, y);
    b->ops->buf_free(b, z);
    tv_close(&e);
}

/* a bad op marks the back-end failed with a reason; sync and download report it */
TEST(vk_sticky_errors) {
    TV_OPEN(e);
    ob_backend *b = e.vk;
    ob_buf *x = b->ops->alloc(b, 256);
    REQUIRE(x != NULL);
    ob_mat w = ob_mat_make((ob_ptr){ x, 0 }, OB_BF16, 100, 100); /* 20000 bytes in a 256-byte buffer */
    b->ops->matmul(b, &w, (ob_ptr){ x, 0 }, (ob_ptr){ x, 0 }, 1, 0);
    CHECK(b->failed);
    CHECK(strstr(b->err, "matmul") != NULL);
    CHECK(b->ops->sync(b) != 0);
    float v;
    CHECK(b->ops->download(b, x, 0, &v, 4) != 0);
    b->ops->buf_free(b, x);
    b->ops->destroy(b);
    e.vk = NULL;
    /* more than the storage-buffer limit in one buffer is refused */
    ob_vk_device_info info[8];
    int n = ob_vulkan_list_devices(info, 8, NULL, 0);
    int d = ob_vulkan_default_device();
    if (n > 0 && d >= 0 && info[d].max_storage_range < ((uint64_t)1 << 40)) {
        char err[256];
        ob_backend *b2 = ob_vulkan_new(-1, err, sizeof err);
        REQUIRE(b2 != NULL);
        CHECK(b2->ops->alloc(b2, (size_t)info[d].max_storage_range + 4096) == NULL);
        CHECK(b2->failed && strstr(b2->err, "maxStorageBufferRange") != NULL);
        b2->ops->destroy(b2);
    }
    tv_close(&e);
}

/* the profiler hooks charge GPU time to the classes marked around queued work */
TEST(vk_profiler_marks) {
    TV_OPEN(e);
    ob_backend *b = e.vk;
    REQUIRE(b->ops->prof_mark && b->ops->prof_read);
    ob_vk_device_info info[8];
    int n = ob_vulkan_list_devices(info, 8, NULL, 0), d = ob_vulkan_default_device();
    enum { N = 1 << 16 };
    ob_buf *x = b->ops->alloc(b, N * 4), *y = b->ops->alloc(b, N * 4);
    REQUIRE(x && y);
    double ms[OB_PROF_N] = { 0 };
    b->ops->prof_read(b, ms); /* nothing yet */
    for (int i = 0; i < OB_PROF_N; i++) CHECK(ms[i] == 0);
    for (int rep = 0; rep < 20; rep++) {
        b->ops->prof_mark(b, OB_PROF_FFN);
        b->ops->swiglu(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, (ob_ptr){ y, 0 }, N);
        b->ops->prof_mark(b, OB_PROF_OTHER);
        b->ops->add(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, N);
        b->ops->prof_mark(b, -1);
    }
    CHECK_EQ_INT(b->ops->sync(b), 0);
    b->ops->prof_read(b, ms);
    for (int i = 0; i < OB_PROF_N; i++) CHECK(ms[i] >= 0);
    CHECK(ms[OB_PROF_ATTN] == 0);
    if (n > 0 && d >= 0 && info[d].timestamps) CHECK(ms[OB_PROF_FFN] > 0 && ms[OB_PROF_OTHER] > 0);
    b->ops->buf_free(b, x);
    b->ops->buf_free(b, y);
    tv_close(&e);
}

/* the grid-barrier benchmark (vulkan_bench gridbar) runs every variant to the end and refuses bad arguments; one
 * workgroup, so the wait on the counter never depends on another workgroup being scheduled (lavapipe runs a
 * workgroup to completion on one of its threads; a hang would become a fence-timeout error) */
TEST(vk_gridbar_bench) {
    TV_OPEN(e);
    ob_backend *b = e.vk;
    double us = -1;
    for (int v = 0; v < 3; v++) {
        CHECK_EQ_INT(ob_vulkan_bench_gridbar(b, 1, (size_t)64 << 10, v, 3, &us), 0);
        CHECK(us == us); /* a number (the difference of two timings may be slightly negative on a busy host) */
    }
    CHECK_EQ_INT(ob_vulkan_bench_gridbar(b, 1, 0, 1, 3, &us), 0);
    CHECK_EQ_INT(ob_vulkan_bench_gridbar(b, 0, 1024, 1, 3, &us), OMNI_E_ARG);
    CHECK_EQ_INT(ob_vulkan_bench_gridbar(b, 2, 1024, 3, 3, &us), OMNI_E_ARG);
    CHECK_EQ_INT(ob_vulkan_bench_gridbar(b, 2, 1024, 1, 1, &us), OMNI_E_ARG);
    CHECK(!b->failed);
    tv_close(&e);
}

/* OMNI_VK_PIPELINE_STATS=1: the driver's statistics of the pipelines made so far, one line each, naming the shader;
 * devices without VK_KHR_pipeline_executable_properties (lavapipe) say so */
TEST(vk_pipeline_stats) {
    setenv("OMNI_VK_PIPELINE_STATS", "1", 1);
    TV_OPEN(e);
    ob_backend *b = e.vk;
    char out[4096];
    ob_buf *x = b->ops->alloc(b, 1024), *y = b->ops->alloc(b, 1024);
    REQUIRE(x && y);
    b->ops->add(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, 16);
    CHECK_EQ_INT(b->ops->sync(b), 0);
    int rc = ob_vulkan_pipeline_stats(b, out, sizeof out);
    b->ops->buf_free(b, x);
    b->ops->buf_free(b, y);
    if (rc == OMNI_E_UNSUPPORTED) {
        tv_close(&e);
        SKIP("no VK_KHR_pipeline_executable_properties");
    }
    CHECK_EQ_INT(rc, OMNI_OK);
    CHECK(strstr(out, "ew [") != NULL);
    CHECK_EQ_INT(ob_vulkan_pipeline_stats(b, out, 0), OMNI_E_ARG);
    tv_close(&e);
}
