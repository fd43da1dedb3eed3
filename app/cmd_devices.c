/* cmd_devices.c — `omni devices`: the Vulkan devices omni can run on, with what its kernels care about (type,
 * driver, memory heaps, subgroup size, fp16/int8/bf16/integer-dot/cooperative-matrix support and the limits that
 * size buffers and kernels), and which one `--backend auto` would pick. A hidden `--bench-matvec` runs the
 * matrix-vector micro-benchmark of the decode kernels on one device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "vulkan/ob_vulkan.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: omni devices [--device N]\n\n"
            "Lists the Vulkan devices omni can use and the features its GPU kernels use. The device marked\n"
            "'default' is the one `--backend auto` picks (a discrete GPU first, then an integrated one).\n\n"
            "  --device N   show only device N\n\n"
            "Environment switches for bisecting driver problems: OMNI_VK_NO_FP16, OMNI_VK_NO_INT8, OMNI_VK_NO_16BIT,\n"
            "OMNI_VK_NO_8BIT, OMNI_VK_NO_BF16, OMNI_VK_NO_INT_DOT, OMNI_VK_NO_COOPMAT, OMNI_VK_NO_SUBGROUP,\n"
            "OMNI_VK_NO_FP64 (=1 turns the feature off); OMNI_VK_VALIDATION=1 enables the validation layer;\n"
            "OMNI_VK_CM_KHR=0 runs the tensor-core kernels in their NV cooperative-matrix builds instead of the KHR\n"
            "ones ('tensor-core kernels' below says which flavour a device runs).\n");
}

static const char *yn(int v) { return v ? "yes" : "no"; }

static void size_str(char *out, size_t cap, uint64_t bytes) {
    if (bytes >= (1ull << 30)) snprintf(out, cap, "%.1f GiB", (double)bytes / (1ull << 30));
    else if (bytes >= (1ull << 20)) snprintf(out, cap, "%.0f MiB", (double)bytes / (1ull << 20));
    else snprintf(out, cap, "%.0f KiB", (double)bytes / 1024);
}

static void print_device(int i, const ob_vk_device_info *d, int is_default) {
    char a[32], b[32];
    printf("[%d] %s (%s)%s\n", i, d->name, d->type, is_default ? "  default" : "");
    printf("    driver:    %s, Vulkan %u.%u.%u\n", d->driver, (d->api_version >> 22) & 0x7f,
           (d->api_version >> 12) & 0x3ff, d->api_version & 0xfff);
    printf("    memory:   ");
    for (int h = 0; h < d->n_heaps; h++) {
        size_str(a, sizeof a, d->heap_bytes[h]);
        printf(" %s%s%s", h ? ", " : "", a, d->heap_device_local[h] ? " device-local" : " host");
    }
    printf("\n    subgroup:  %u (arithmetic %s, shuffle %s, size control %s)\n", d->subgroup_size,
           yn(d->subgroup_arith), yn(d->subgroup_shuffle), yn(d->subgroup_size_control));
    printf("    types:     fp16 %s, int8 %s, bf16 %s, fp64 %s, int64 %s, 16-bit storage %s, 8-bit storage %s\n",
           yn(d->fp16), yn(d->int8), yn(d->bf16), yn(d->fp64), yn(d->int64), yn(d->storage16), yn(d->storage8));
    printf("    matrix:    integer dot %s%s, cooperative matrix NV %s, KHR %s%s, NV2 %s\n", yn(d->int_dot),
           d->int_dot_accel ? " (accelerated)" : "", yn(d->coopmat_nv), yn(d->coopmat_khr),
           d->cm_khr_bf16 ? " (bf16 shapes too)" : "", yn(d->coopmat2_nv));
    printf("    tensor-core kernels: %s\n", d->cm_kernels == 2   ? "KHR cooperative matrix"
                                        : d->cm_kernels == 1 ? "NV cooperative matrix"
                                                             : "none (fp32 prefill kernels)");
    size_str(a, sizeof a, d->max_alloc);
    size_str(b, sizeof b, d->max_storage_range);
    printf("    limits:    allocation %s, storage buffer %s, shared memory %u KiB, push constants %u B, "
           "workgroup %u\n",
           a, b, d->max_shared / 1024, d->max_push, d->max_wg_invocations);
    if (d->compute_units) printf("    compute:   %u units (SMs / CUs)\n", d->compute_units);
    else printf("    compute:   units not reported by the driver\n");
    if (!d->usable) printf("    not usable by omni: %s\n", d->why_unusable);
}

/* decode-step kernels at Qwen3-Omni thinker shapes; prints weight GB/s (and % of --peak) */
static int bench(int device, double peak) {
    char err[256] = "";
    ob_backend *b = ob_vulkan_new(device, err, sizeof err);
    if (!b) {
        fprintf(stderr, "omni devices: %s\n", err);
        return CLI_ERR;
    }
    printf("matrix-vector benchmark on %s\n", b->ops->device_name(b));
    printf("%-34s %10s %10s %10s %10s %10s\n", "kernel", "MB/call", "us", "GB/s", "us chain", "GB/s chain");
    struct {
        const char *what;
        ob_dtype t;
        int rows, cols, sel;
    } cases[] = {
        { "q/k/v-like proj [4096 x 2048] bf16", OB_BF16, 4096, 2048, 0 },
        { "o_proj [2048 x 4096] bf16", OB_BF16, 2048, 4096, 0 },
        { "lm_head [151936 x 2048] bf16", OB_BF16, 151936, 2048, 0 },
        { "experts 8 x [768 x 2048] bf16", OB_BF16, 768, 2048, 8 },
        { "q/k/v-like proj [4096 x 2048] q8_0", OB_Q8_0, 4096, 2048, 0 },
        { "experts 8 x [768 x 2048] q8_0", OB_Q8_0, 768, 2048, 8 },
        { "o_proj [2048 x 4096] f16", OB_F16, 2048, 4096, 0 },
        { "o_proj [2048 x 4096] f32", OB_F32, 2048, 4096, 0 },
    };
    int rc = CLI_OK;
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        ob_vk_bench_result r;
        int e = ob_vulkan_bench_matvec(b, cases[i].t, cases[i].rows, cases[i].cols, cases[i].sel, 50, &r);
        if (e != 0) {
            fprintf(stderr, "omni devices: benchmark '%s' failed: %s\n", cases[i].what, b->err[0] ? b->err : "error");
            rc = CLI_ERR;
            break;
        }
        printf("%-34s %10.2f %10.2f %10.0f %10.2f %10.0f", cases[i].what, r.weight_bytes / 1e6, r.ms_per_call * 1e3,
               r.gbytes_per_s, r.ms_per_call_chained * 1e3, r.gbytes_per_s_chained);
        if (peak > 0) printf("  (%.0f%% / %.0f%% of %.0f GB/s)", 100 * r.gbytes_per_s / peak,
                             100 * r.gbytes_per_s_chained / peak, peak);
        printf("%s\n", r.timed_on_device ? "" : "  [host clock]");
    }
    b->ops->destroy(b);
    return rc;
}

int cmd_devices(int argc, char **argv) {
    int only = -1, do_bench = 0;
    double peak = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 0 || v > 64) {
                fprintf(stderr, "omni devices: --device needs an index from this list\n");
                return CLI_USAGE;
            }
            only = (int)v;
        } else if (!strcmp(argv[i], "--bench-matvec")) {
            do_bench = 1;
        } else if (!strcmp(argv[i], "--peak") && i + 1 < argc) {
            peak = atof(argv[++i]);
        } else {
            fprintf(stderr, "omni devices: unknown option '%s' (try omni devices --help)\n", argv[i]);
            return CLI_USAGE;
        }
    }
    if (do_bench) return bench(only, peak);
    ob_vk_device_info info[16];
    char err[256] = "";
    int n = ob_vulkan_list_devices(info, 16, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "omni devices: %s\n", err);
        return CLI_ERR;
    }
    if (n == 0) {
        printf("no Vulkan device found; omni will run on the CPU\n");
        return CLI_OK;
    }
    if (n > 16) n = 16;
    if (only >= n) {
        fprintf(stderr, "omni devices: there is no device %d (%d found)\n", only, n);
        return CLI_USAGE;
    }
    int def = ob_vulkan_default_device();
    for (int i = 0; i < n; i++)
        if (only < 0 || i == only) print_device(i, &info[i], i == def);
    return CLI_OK;
}
