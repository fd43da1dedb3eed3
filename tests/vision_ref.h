/* vision_ref.h — helpers shared by the vision reference tests: CRC-32 of pixel data and the key=value fields of the
 * committed reference case lists (the .txt files under tests/data/vision/ref). */
#ifndef TEST_VISION_REF_H
#define TEST_VISION_REF_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* zlib's CRC-32 (the references store crc32 of byte buffers); c = 0 to start */
static inline uint32_t crc32_update(uint32_t c, const uint8_t *p, size_t n) {
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t v = i;
            for (int k = 0; k < 8; k++) v = v & 1 ? 0xEDB88320u ^ (v >> 1) : v >> 1;
            table[i] = v;
        }
    c ^= 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static inline uint32_t crc32_bytes(const uint8_t *p, size_t n) { return crc32_update(0, p, n); }

/* Value of `key=` in a case line (up to the next space), or NULL. */
static inline const char *kv(const char *line, const char *key, char *buf, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    if (!p) return NULL;
    p += strlen(pat);
    size_t n = strcspn(p, " \n");
    if (n >= cap) n = cap - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

static inline long kv_long(const char *line, const char *key) {
    char b[64];
    return kv(line, key, b, sizeof b) ? strtol(b, NULL, 10) : -1;
}

static inline double kv_double(const char *line, const char *key) {
    char b[64];
    return kv(line, key, b, sizeof b) ? strtod(b, NULL) : NAN;
}

#endif
