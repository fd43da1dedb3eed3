// reduce.glsl — workgroup and subgroup reductions. Built twice by shaders.mk: with subgroup operations, and with
// -DNO_SUBGROUP (shared memory only) for devices without subgroup arithmetic or with OMNI_VK_NO_SUBGROUP set.
// The including shader declares the spec constant WG (its workgroup size, a power of two) first.
//
// SG_* name the unit a kernel gives one row to: a real subgroup, or in the NO_SUBGROUP build the whole workgroup.
// sg_sum/wg_sum must be called in uniform control flow of that unit; every thread gets the result. The order of
// additions is fixed, so results do not depend on timing.
#ifndef NO_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#define SG_LANE gl_SubgroupInvocationID
#define SG_SIZE gl_SubgroupSize
#define SG_ID gl_SubgroupID
#define N_SG gl_NumSubgroups
#define RED_SIZE 128
#else
#define SG_LANE gl_LocalInvocationID.x
#define SG_SIZE WG
#define SG_ID 0u
#define N_SG 1u
#define RED_SIZE WG
#endif

shared float red_f[RED_SIZE];
shared uint red_u[RED_SIZE];

float wg_sum(float v) {
#ifndef NO_SUBGROUP
    v = subgroupAdd(v);
    barrier();
    if (subgroupElect()) red_f[gl_SubgroupID] = v;
    barrier();
    float r = 0.0f;
    for (uint i = 0; i < gl_NumSubgroups; i++) r += red_f[i];
    return r;
#else
    uint t = gl_LocalInvocationID.x;
    barrier();
    red_f[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) red_f[t] += red_f[t + s];
        barrier();
    }
    return red_f[0];
#endif
}

float wg_max(float v) {
#ifndef NO_SUBGROUP
    v = subgroupMax(v);
    barrier();
    if (subgroupElect()) red_f[gl_SubgroupID] = v;
    barrier();
    float r = red_f[0];
    for (uint i = 1; i < gl_NumSubgroups; i++) r = max(r, red_f[i]);
    return r;
#else
    uint t = gl_LocalInvocationID.x;
    barrier();
    red_f[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) red_f[t] = max(red_f[t], red_f[t + s]);
        barrier();
    }
    return red_f[0];
#endif
}

// the largest v over the workgroup; among equal values the smallest index i (every thread gets both)
void wg_argmax(inout float v, inout uint i) {
#ifndef NO_SUBGROUP
    float m = subgroupMax(v);
    uint mi = subgroupMin(v == m ? i : 0xffffffffu);
    barrier();
    if (subgroupElect()) {
        red_f[gl_SubgroupID] = m;
        red_u[gl_SubgroupID] = mi;
    }
    barrier();
    v = red_f[0];
    i = red_u[0];
    for (uint s = 1; s < gl_NumSubgroups; s++)
        if (red_f[s] > v || (red_f[s] == v && red_u[s] < i)) {
            v = red_f[s];
            i = red_u[s];
        }
#else
    uint t = gl_LocalInvocationID.x;
    barrier();
    red_f[t] = v;
    red_u[t] = i;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s && (red_f[t + s] > red_f[t] || (red_f[t + s] == red_f[t] && red_u[t + s] < red_u[t]))) {
            red_f[t] = red_f[t + s];
            red_u[t] = red_u[t + s];
        }
        barrier();
    }
    v = red_f[0];
    i = red_u[0];
#endif
}

// sum over the unit that owns a row (see SG_*)
float sg_sum(float v) {
#ifndef NO_SUBGROUP
    return subgroupAdd(v);
#else
    return wg_sum(v);
#endif
}
