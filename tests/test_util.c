/* test_util.c — number-format conversions and small helpers. */
#include "harness.h"
#include "util.h"

TEST(f16_roundtrip) {
    float vals[] = { 0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333333f };
    for (unsigned i = 0; i < sizeof vals / sizeof *vals; i++) {
        float r = omni_f16_to_f32(omni_f32_to_f16(vals[i]));
        CHECK_NEAR(r, vals[i], fabs(vals[i]) * 1e-3 + 1e-9);
    }
    CHECK(omni_f32_to_f16(1e6f) == 0x7c00);          /* overflow to +inf */
    CHECK(omni_f32_to_f16(1.0f) == 0x3c00);
    for (uint32_t h = 0; h < 0x7c00; h++)             /* every finite half survives a round trip */
        if (omni_f32_to_f16(omni_f16_to_f32((uint16_t)h)) != h) { CHECK(0); break; }
}

TEST(bf16_rounding) {
    CHECK(omni_f32_to_bf16(1.0f) == 0x3f80);
    CHECK_NEAR(omni_bf16_to_f32(omni_f32_to_bf16(3.14159f)), 3.140625, 1e-9);
    /* ties go to even: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7 */
    CHECK(omni_f32_to_bf16(1.00390625f) == 0x3f80);
}

TEST(error_messages) {
    omni_err e = { { 0 } };
    int rc = omni_fail(&e, OMNI_E_CONFIG, "%s: field '%s' missing", "config.json", "hidden_size");
    CHECK_EQ_INT(rc, OMNI_E_CONFIG);
    CHECK(strcmp(e.msg, "config.json: field 'hidden_size' missing") == 0);
    CHECK(strcmp(omni_strerror(OMNI_E_CONTEXT), "context window full") == 0);
}
