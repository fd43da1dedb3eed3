/* test_vision_image.c — image loading: decoding of every committed test image against the reference's
 * `convert_to_rgb` output (made by tests/gen_vision_ref.py with Pillow 12.3 on the reference machine), header
 * limits checked before decoding, and truncated/corrupt/non-image inputs giving one error line, never a crash.
 * Tolerance for decoded pixels: exact (0 differing bytes), except the documented 16-bit greyscale case. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "vision_ref.h"
#include "image.h"

#define VISION_FUZZ_NO_ENTRY
#include "fuzz/fuzz_image.c"

#define VREF TESTDATA "/vision"

/* ---- small helpers (CRC and case-list fields: vision_ref.h) ---- */


static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Decompresses an .xz file through the xz tool; exactly `want` bytes or NULL. */
static uint8_t *read_xz(const char *path, size_t want) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "xz -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    uint8_t *b = malloc(want + 1);
    size_t got = b ? fread(b, 1, want + 1, f) : 0;
    pclose(f);
    if (got != want) {
        free(b);
        return NULL;
    }
    return b;
}



/* ---- decoding against the reference ---- */

TEST(vision_decode_matches_reference) {
    FILE *f = fopen(VREF "/ref/cases.txt", "r");
    REQUIRE(f != NULL);
    char line[4096], file[256], name[64], crc[32];
    int n_cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "case ", 5) || !kv(line, "file", file, sizeof file)) continue;
        kv(line, "name", name, sizeof name);
        char path[512];
        snprintf(path, sizeof path, VREF "/%s", file);
        vision_image *img = NULL;
        vision_err e = { { 0 } };
        int rc = vision_image_load(path, NULL, &img, &e);
        if (rc) {
            th_fail(__FILE__, __LINE__, "%s: %s", name, e.msg);
            continue;
        }
        n_cases++;
        CHECK_EQ_INT(img->w, kv_long(line, "w"));
        CHECK_EQ_INT(img->h, kv_long(line, "h"));
        size_t nbytes = (size_t)img->w * (size_t)img->h * 3;
        uint32_t want = (uint32_t)strtoul(kv(line, "dec_crc", crc, sizeof crc), NULL, 16);
        uint32_t got = crc32_bytes(img->rgb, nbytes);
        if (!strcmp(name, "gray16")) {
            /* Known difference: Pillow clips 16-bit grey at 255, SDL2_image/libpng keeps the high byte. The file's
             * first row starts with the 16-bit values 100, 255, 6000, 9000 (gen_vision_ref.py). */
            CHECK(got != want);
            CHECK(img->rgb[0] == 0 && img->rgb[3] == 0 && img->rgb[6] == 6000 >> 8 && img->rgb[9] == 9000 >> 8);
        } else if (got != want) {
            char dpath[512];
            snprintf(dpath, sizeof dpath, VREF "/ref/%s.dec.xz", name);
            uint8_t *ref = kv_long(line, "dec") == 1 ? read_xz(dpath, nbytes) : NULL;
            size_t diff = 0;
            for (size_t i = 0; ref && i < nbytes; i++) diff += ref[i] != img->rgb[i];
            th_fail(__FILE__, __LINE__, "%s: decoded RGB differs from the reference (crc %08x vs %08x, %zu bytes)",
                    name, got, want, diff);
            free(ref);
        }
        vision_image_free(img);
    }
    fclose(f);
    CHECK(n_cases >= 25);
}

TEST(vision_probe_reports_format_and_size) {
    static const struct { const char *file; int fmt; int w, h; } cases[] = {
        { "tiny_rgb.png", VISION_FMT_PNG, 30, 20 },   { "photo.jpg", VISION_FMT_JPEG, 200, 150 },
        { "prog.jpg", VISION_FMT_JPEG, 130, 90 },     { "anim.gif", VISION_FMT_GIF, 52, 36 },
        { "gif_screen.gif", VISION_FMT_GIF, 53, 37 }, { "rgb.bmp", VISION_FMT_BMP, 61, 45 },
        { "lossy.webp", VISION_FMT_WEBP, 80, 64 },    { "lossless.webp", VISION_FMT_WEBP, 56, 40 },
        { "rgba.webp", VISION_FMT_WEBP, 44, 36 },     { "rgb.tif", VISION_FMT_TIFF, 40, 30 },
        { "lzw.tif", VISION_FMT_TIFF, 42, 31 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256];
        snprintf(path, sizeof path, VREF "/img/%s", cases[i].file);
        size_t len;
        uint8_t *d = read_file(path, &len);
        REQUIRE(d != NULL);
        vision_header h;
        vision_err e = { { 0 } };
        int rc = vision_probe(d, len, NULL, &h, &e);
        if (rc) th_fail(__FILE__, __LINE__, "%s: %s", cases[i].file, e.msg);
        CHECK_EQ_INT(h.format, cases[i].fmt);
        CHECK_EQ_INT(h.width, cases[i].w);
        CHECK_EQ_INT(h.height, cases[i].h);
        free(d);
    }
}

/* ---- damaged inputs: one error line, never a crash ---- */

static const char *all_images[] = {
    "tiny_rgb.png", "wide_rgb.png", "tall_thin.png", "one_px.png", "rgba.png", "gray.png", "gray_alpha.png",
    "pal.png", "pal_trns.png", "gray16.png", "gray_trns.png", "rgb_trns.png", "photo.jpg", "gray.jpg", "prog.jpg",
    "anim.gif", "gif_screen.gif", "rgb.bmp", "rgb.tif", "lzw.tif", "lossless.webp", "rgba.webp", "lossy.webp",
};

/* Formats whose structure ends in a marker we check (PNG IEND, JPEG EOI, WebP RIFF size, BMP pixel array): any
 * truncation must be refused. GIF needs only the first frame and TIFF only its strips, so a cut can be harmless. */
static int must_refuse_truncation(const char *file) {
    const char *ext = strrchr(file, '.');
    return !strcmp(ext, ".png") || !strcmp(ext, ".jpg") || !strcmp(ext, ".webp") || !strcmp(ext, ".bmp");
}

TEST(vision_truncated_files_are_refused) {
    for (size_t i = 0; i < sizeof all_images / sizeof *all_images; i++) {
        char path[256];
        snprintf(path, sizeof path, VREF "/img/%s", all_images[i]);
        size_t len;
        uint8_t *d = read_file(path, &len);
        REQUIRE(d != NULL);
        size_t cuts[12];
        int nc = 0;
        for (int k = 0; k < 8; k++) cuts[nc++] = len * (size_t)k / 8;
        cuts[nc++] = len - 1;
        cuts[nc++] = len > 12 ? len - 12 : 0;
        cuts[nc++] = 7;
        for (int k = 0; k < nc; k++) {
            size_t n = cuts[k];
            uint8_t *copy = malloc(n ? n : 1); /* exact-size copy so ASan sees any over-read */
            memcpy(copy, d, n);
            CHECK(vision_fuzz_one(copy, n) == 0);
            vision_image *img = NULL;
            vision_err e = { { 0 } };
            int rc = vision_image_decode(copy, n, all_images[i], NULL, &img, &e);
            if (rc == VISION_OK) {
                if (must_refuse_truncation(all_images[i]))
                    th_fail(__FILE__, __LINE__, "%s cut to %zu of %zu bytes was accepted", all_images[i], n, len);
                CHECK(img != NULL && img->w > 0 && img->h > 0);
            } else {
                CHECK(img == NULL);
                CHECK(e.msg[0] != 0 && strchr(e.msg, '\n') == NULL);
                CHECK(strncmp(e.msg, all_images[i], strlen(all_images[i])) == 0); /* names the input */
            }
            vision_image_free(img);
            free(copy);
        }
        free(d);
    }
}

TEST(vision_corrupt_files_do_not_crash) {
    uint64_t s = 0x9E3779B97F4A7C15ull;
    int refused = 0, accepted = 0;
    vision_limits lim; /* a damaged header may claim anything up to the limits: keep allocations small */
    vision_default_limits(&lim);
    lim.max_pixels = 1 << 22;
    for (size_t i = 0; i < sizeof all_images / sizeof *all_images; i++) {
        char path[256];
        snprintf(path, sizeof path, VREF "/img/%s", all_images[i]);
        size_t len;
        uint8_t *d = read_file(path, &len);
        REQUIRE(d != NULL);
        for (int v = 0; v < 24; v++) {
            uint8_t *copy = malloc(len);
            memcpy(copy, d, len);
            int flips = 1 + v % 4;
            for (int k = 0; k < flips; k++) {
                s ^= s << 13, s ^= s >> 7, s ^= s << 17;
                /* half the damage lands in the first 64 bytes, where the headers are */
                size_t at = (v & 1) ? (size_t)(s % (len < 64 ? len : 64)) : (size_t)(s % len);
                copy[at] ^= (uint8_t)(1 + (s >> 32) % 255);
            }
            if (vision_fuzz_one(copy, len)) /* the fuzz target's invariants, preprocessing included */
                th_fail(__FILE__, __LINE__, "%s variant %d breaks an invariant of fuzz_image.c", all_images[i], v);
            vision_image *img = NULL;
            vision_err e = { { 0 } };
            int rc = vision_image_decode(copy, len, all_images[i], &lim, &img, &e);
            if (rc) {
                refused++;
                CHECK(img == NULL && e.msg[0] != 0);
            } else {
                accepted++; /* damaged pixel data can still decode; the size must be sane */
                CHECK(img->w > 0 && img->h > 0 && (int64_t)img->w * img->h <= lim.max_pixels);
            }
            vision_image_free(img);
            free(copy);
        }
        free(d);
    }
    CHECK(refused > 0);
    (void)accepted;
}

TEST(vision_rejects_non_images) {
    static const char *texts[] = { "hello, world\n", "<svg xmlns='http://www.w3.org/2000/svg'/>", "\x89PNG",
                                   "BM", "GIF89a", "RIFF\x04\x00\x00\x00WEBP", "II*\x00", "\xff\xd8\xff" };
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        vision_image *img = NULL;
        vision_err e = { { 0 } };
        int rc = vision_image_decode((const uint8_t *)texts[i], strlen(texts[i]), "input", NULL, &img, &e);
        CHECK(rc == VISION_E_UNSUPPORTED || rc == VISION_E_FORMAT);
        CHECK(img == NULL && strncmp(e.msg, "input: ", 7) == 0);
    }
    vision_image *img = NULL;
    vision_err e = { { 0 } };
    CHECK_EQ_INT(vision_image_decode((const uint8_t *)"", 0, "empty", NULL, &img, &e), VISION_E_FORMAT);
    /* a TGA (no signature) is not guessed at */
    static const uint8_t tga[18 + 3] = { 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 24, 0, 1, 2, 3 };
    CHECK_EQ_INT(vision_image_decode(tga, sizeof tga, "tga", NULL, &img, &e), VISION_E_UNSUPPORTED);
    CHECK(strstr(e.msg, "not a PNG, JPEG, GIF, BMP, WebP or TIFF") != NULL);
}

TEST(vision_unreadable_paths) {
    vision_image *img = NULL;
    vision_err e = { { 0 } };
    CHECK_EQ_INT(vision_image_load("tests/data/vision/no-such-file.png", NULL, &img, &e), VISION_E_IO);
    CHECK(strstr(e.msg, "no-such-file.png") != NULL && strstr(e.msg, "No such file") != NULL);
    CHECK_EQ_INT(vision_image_load(VREF "/img", NULL, &img, &e), VISION_E_IO);
    CHECK(strstr(e.msg, "not a regular file") != NULL);
    CHECK(img == NULL);
    CHECK_EQ_INT(vision_image_load(NULL, NULL, &img, &e), VISION_E_ARG);
}

/* ---- limits from the header, before decoding ---- */

static void put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v; }
static void put_le16(uint8_t *p, uint32_t v) { p[0] = v, p[1] = v >> 8; }
static void put_le32(uint8_t *p, uint32_t v) { p[0] = v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24; }

TEST(vision_header_limits_refuse_huge_images) {
    size_t len;
    uint8_t *png = read_file(VREF "/img/tiny_rgb.png", &len);
    REQUIRE(png != NULL);
    vision_image *img = NULL;
    vision_err e = { { 0 } };
    /* IHDR width at byte 16, height at 20, its CRC at 29 */
    put_be32(png + 16, 100001);
    put_be32(png + 29, crc32_bytes(png + 12, 17));
    CHECK_EQ_INT(vision_image_decode(png, len, "wide.png", NULL, &img, &e), VISION_E_SIZE);
    CHECK(strstr(e.msg, "100001x20") != NULL && strstr(e.msg, "per side") != NULL);
    put_be32(png + 16, 100000);
    put_be32(png + 20, 100000);
    put_be32(png + 29, crc32_bytes(png + 12, 17));
    CHECK_EQ_INT(vision_image_decode(png, len, "big.png", NULL, &img, &e), VISION_E_SIZE);
    CHECK(strstr(e.msg, "178956970 pixels") != NULL);
    free(png);

    /* custom limits: 64 pixels per side */
    vision_limits lim;
    vision_default_limits(&lim);
    lim.max_side = 64;
    CHECK_EQ_INT(vision_image_load(VREF "/img/tiny_rgb.png", &lim, &img, &e), VISION_OK);
    vision_image_free(img);
    CHECK_EQ_INT(vision_image_load(VREF "/img/wide_rgb.png", &lim, &img, &e), VISION_E_SIZE);
    lim.max_side = 100000;
    lim.max_file_bytes = 1000;
    CHECK_EQ_INT(vision_image_load(VREF "/img/wide_rgb.png", &lim, &img, &e), VISION_E_SIZE);

    /* JPEG SOF claiming 65535 x 65535 */
    uint8_t *jpg = read_file(VREF "/img/photo.jpg", &len);
    REQUIRE(jpg != NULL);
    int patched = 0;
    for (size_t i = 2; i + 9 < len; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
            jpg[i + 5] = jpg[i + 6] = jpg[i + 7] = jpg[i + 8] = 0xFF;
            patched = 1;
            break;
        }
    CHECK(patched);
    CHECK_EQ_INT(vision_image_decode(jpg, len, "big.jpg", NULL, &img, &e), VISION_E_SIZE);
    free(jpg);

    /* GIF screen 65535 x 65535 */
    uint8_t *gif = read_file(VREF "/img/anim.gif", &len);
    REQUIRE(gif != NULL);
    put_le16(gif + 6, 65535);
    put_le16(gif + 8, 65535);
    CHECK_EQ_INT(vision_image_decode(gif, len, "big.gif", NULL, &img, &e), VISION_E_SIZE);
    free(gif);

    /* BMP 200000 wide */
    uint8_t *bmp = read_file(VREF "/img/rgb.bmp", &len);
    REQUIRE(bmp != NULL);
    put_le32(bmp + 18, 200000);
    CHECK_EQ_INT(vision_image_decode(bmp, len, "big.bmp", NULL, &img, &e), VISION_E_SIZE);
    free(bmp);

    /* WebP VP8X canvas 16384 x 16384 (268M pixels) */
    uint8_t webp[30] = { 'R', 'I', 'F', 'F', 22, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'X', 10, 0, 0, 0, 0 };
    put_le32(webp + 24, 0x3FFF); /* width-1 (24 bits at 24..26), height-1 (27..29) */
    webp[27] = 0xFF, webp[28] = 0x3F, webp[29] = 0;
    CHECK_EQ_INT(vision_image_decode(webp, sizeof webp, "big.webp", NULL, &img, &e), VISION_E_SIZE);
    CHECK(img == NULL);
}

TEST(vision_unsupported_variants) {
    vision_image *img = NULL;
    vision_err e = { { 0 } };
    /* minimal JPEG with a 4-component (CMYK) frame header */
    static const uint8_t cmyk[] = { 0xFF, 0xD8, 0xFF, 0xC0, 0, 20, 8, 0, 8, 0, 8, 4, 1, 0x11, 0, 2, 0x11, 0, 3,
                                    0x11, 0, 4, 0x11, 0, 0xFF, 0xD9 };
    CHECK_EQ_INT(vision_image_decode(cmyk, sizeof cmyk, "cmyk.jpg", NULL, &img, &e), VISION_E_UNSUPPORTED);
    CHECK(strstr(e.msg, "CMYK") != NULL);
    /* animated WebP (VP8X flag 0x02) */
    uint8_t anim[30] = { 'R', 'I', 'F', 'F', 22, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'X', 10, 0, 0, 0, 2 };
    CHECK_EQ_INT(vision_image_decode(anim, sizeof anim, "anim.webp", NULL, &img, &e), VISION_E_UNSUPPORTED);
    /* BigTIFF */
    static const uint8_t big[16] = { 'I', 'I', 43, 0, 8, 0, 0, 0 };
    CHECK_EQ_INT(vision_image_decode(big, sizeof big, "big.tif", NULL, &img, &e), VISION_E_UNSUPPORTED);
    CHECK(img == NULL);
}

TEST(vision_free_null_is_fine) {
    vision_image_free(NULL);
    vision_image *img = vision_image_new(3, 2);
    REQUIRE(img != NULL);
    CHECK(img->w == 3 && img->h == 2 && img->rgb != NULL);
    vision_image_free(img);
    CHECK(vision_image_new(0, 5) == NULL);
    CHECK(vision_image_new(1 << 20, 1 << 20) == NULL); /* 2^40 pixels: refused, nothing allocated */
}

/* ---- GIF (decoded by vision/gif.c, not SDL2_image) ---- */

TEST(vision_gif_variants_match_pillow) {
    /* Interlaced GIFs are in the reference set above; these cover non-interlaced frames, a 2-bit code size and an
     * LZW table that fills (clear codes mid-stream). Their CRCs come from Pillow 9.4 on the build machine. */
    FILE *f = fopen(VREF "/regress/pillow94_crc.txt", "r");
    REQUIRE(f != NULL);
    char line[256], file[128];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned w, h, crc;
        if (line[0] == '#' || sscanf(line, "%127s %u %u %x", file, &w, &h, &crc) != 4) continue;
        char path[300];
        snprintf(path, sizeof path, VREF "/regress/%s", file);
        vision_image *img = NULL;
        vision_err e = { { 0 } };
        if (vision_image_load(path, NULL, &img, &e)) {
            th_fail(__FILE__, __LINE__, "%s", e.msg);
            continue;
        }
        CHECK(img->w == (int)w && img->h == (int)h);
        CHECK(crc32_bytes(img->rgb, (size_t)img->w * (size_t)img->h * 3) == crc);
        vision_image_free(img);
        n++;
    }
    fclose(f);
    CHECK_EQ_INT(n, 3);
}

TEST(vision_gif_damaged_lzw_data) {
    /* found by fuzz_image: SDL2_image 2.6's GIF reader freed a wild pointer on this file */
    size_t len;
    uint8_t *d = read_file(VREF "/regress/sdl_gif_bad_free.gif", &len);
    REQUIRE(d != NULL);
    CHECK(vision_fuzz_one(d, len) == 0);
    free(d);
    /* every single-byte change inside the LZW data of a valid GIF: an error or a complete frame */
    d = read_file(VREF "/regress/gif_tiny.gif", &len);
    REQUIRE(d != NULL);
    vision_header hd;
    REQUIRE(vision_probe(d, len, NULL, &hd, NULL) == 0);
    int refused = 0;
    for (size_t at = hd.gif_data_off; at < len; at++)
        for (int bit = 0; bit < 8; bit++) {
            d[at] ^= (uint8_t)(1 << bit);
            CHECK(vision_fuzz_one(d, len) == 0);
            vision_image *img = NULL;
            vision_err e = { { 0 } };
            if (vision_image_decode(d, len, "g", NULL, &img, &e)) refused++;
            vision_image_free(img);
            d[at] ^= (uint8_t)(1 << bit);
        }
    CHECK(refused > 0);
    free(d);
}
