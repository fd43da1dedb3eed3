/* vk_device.c — the Vulkan instance (with the validation layer on request), physical-device probing and
 * selection, the logical device with its one compute queue, the OMNI_VK_* environment switches, and the device
 * listing behind `omni devices`.
 *
 * omni's minimum: Vulkan 1.2, bufferDeviceAddress (every kernel addresses memory through pointers in push
 * constants) and shaderInt64 (for those pointers). Everything else is optional and probed: 16/8-bit storage,
 * fp16/int8 arithmetic, fp64, bf16 (VK_KHR_shader_bfloat16), integer dot product, subgroup size control and
 * arithmetic/shuffle, cooperative matrix (NV, KHR, NV2). */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* Structures newer than the Debian 12 headers (1.3.239); layouts from the Vulkan registry. */
#define OB_STYPE_COOPMAT_KHR_FEATURES ((VkStructureType)1000506000)
#define OB_STYPE_BF16_FEATURES ((VkStructureType)1000141000)
typedef struct {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrix, cooperativeMatrixRobustBufferAccess;
} ob_coopmat_khr_features;
typedef struct {
    VkStructureType sType;
    void *pNext;
    VkBool32 shaderBFloat16Type, shaderBFloat16DotProduct, shaderBFloat16CooperativeMatrix;
} ob_bf16_features;

/* VK_NV_cooperative_matrix2 (headers 1.4.x; layouts from the registry) */
#define OB_STYPE_COOPMAT2_FEATURES ((VkStructureType)1000593000)
#define OB_STYPE_COOPMAT_FLEX_PROPS ((VkStructureType)1000593001)
#define OB_STYPE_COOPMAT2_PROPS ((VkStructureType)1000593002)
typedef struct {
    VkStructureType sType;
    void *pNext;
    VkBool32 cooperativeMatrixWorkgroupScope, cooperativeMatrixFlexibleDimensions, cooperativeMatrixReductions,
        cooperativeMatrixConversions, cooperativeMatrixPerElementOperations, cooperativeMatrixTensorAddressing,
        cooperativeMatrixBlockLoads;
} ob_coopmat2_features;
typedef struct {
    VkStructureType sType;
    void *pNext;
    uint32_t cooperativeMatrixWorkgroupScopeMaxWorkgroupSize, cooperativeMatrixFlexibleDimensionsMaxDimension,
        cooperativeMatrixWorkgroupScopeReservedSharedMemory;
} ob_coopmat2_props;
typedef struct {
    VkStructureType sType;
    void *pNext;
    uint32_t MGranularity, NGranularity, KGranularity;
    uint32_t AType, BType, CType, ResultType; /* VkComponentTypeKHR: 0 fp16, 1 fp32, 1000141000 bf16 */
    VkBool32 saturatingAccumulation;
    uint32_t scope; /* VkScopeKHR: 2 workgroup */
    uint32_t workgroupInvocations;
} ob_coopmat_flex_props;
typedef VkResult(VKAPI_PTR *ob_pfn_flex_props)(VkPhysicalDevice, uint32_t *, ob_coopmat_flex_props *);
/* VK_KHR_cooperative_matrix's shape list (headers 1.3.255+) */
#define OB_STYPE_COOPMAT_KHR_PROPS ((VkStructureType)1000506001)
typedef struct {
    VkStructureType sType;
    void *pNext;
    uint32_t MSize, NSize, KSize;
    uint32_t AType, BType, CType, ResultType; /* VkComponentTypeKHR */
    VkBool32 saturatingAccumulation;
    uint32_t scope; /* VkScopeKHR: 3 subgroup */
} ob_coopmat_khr_props;
typedef VkResult(VKAPI_PTR *ob_pfn_khr_props)(VkPhysicalDevice, uint32_t *, ob_coopmat_khr_props *);
#define OB_SCOPE_SUBGROUP 3u
#define OB_CT_F16 0u
#define OB_CT_F32 1u
#define OB_CT_BF16 1000141000u
#define OB_SCOPE_WORKGROUP 2u

static int env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* an integer switch (dflt when unset or empty); vk_env_read reads them once per back-end, the per-call readers of
 * vk_coopmat.c, vk_moe.c and vk_decode.c at each call */
int vk_env_now(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static int env_choice(const char *name, const char *a, const char *b) {
    const char *v = getenv(name);
    if (!v) return 0;
    if (!strcmp(v, a)) return 1;
    if (!strcmp(v, b)) return 2;
    return 0;
}

void vk_env_read(vk_env *e) {
    memset(e, 0, sizeof *e);
    e->validation = vk_env_now("OMNI_VK_VALIDATION", 0);
    e->no_fp16 = env_flag("OMNI_VK_NO_FP16");
    e->no_int8 = env_flag("OMNI_VK_NO_INT8");
    e->no_16bit = env_flag("OMNI_VK_NO_16BIT");
    e->no_8bit = env_flag("OMNI_VK_NO_8BIT");
    e->no_bf16 = env_flag("OMNI_VK_NO_BF16");
    e->no_int_dot = env_flag("OMNI_VK_NO_INT_DOT");
    e->no_coopmat = env_flag("OMNI_VK_NO_COOPMAT");
    e->no_subgroup = env_flag("OMNI_VK_NO_SUBGROUP");
    e->no_fp64 = env_flag("OMNI_VK_NO_FP64");
    e->cm_khr = vk_env_now("OMNI_VK_CM_KHR", -1);
    e->max_ops = vk_env_now("OMNI_VK_MAX_OPS", 128);
    if (e->max_ops < 1) e->max_ops = 1;
    e->attn = env_choice("OMNI_VK_ATTN", "split", "flash");
    e->mm = env_choice("OMNI_VK_MM", "vec", "tiled");
    e->moe = env_choice("OMNI_VK_MOE", "vec", "grouped");
    e->mv_wg = vk_env_now("OMNI_VK_MV_WG", 0);
    e->mv_rsg = vk_env_now("OMNI_VK_MV_RSG", 0);
    e->mv_unroll = vk_env_now("OMNI_VK_MV_U", 0);
    if (e->mv_unroll != 0 && e->mv_unroll != 1 && e->mv_unroll != 2 && e->mv_unroll != 4) e->mv_unroll = 0;
    e->mv_cvt = vk_env_now("OMNI_VK_MV_CVT", -1);
    e->mv_rsg_down = vk_env_now("OMNI_VK_MV_RSG_DOWN", 0);
    e->fence_timeout_s = vk_env_now("OMNI_VK_FENCE_TIMEOUT_S", 120);
    if (e->fence_timeout_s <= 0) e->fence_timeout_s = 120;
    e->sync_each = env_flag("OMNI_VK_SYNC");
    e->fuse = vk_env_now("OMNI_VK_FUSE", 1);
    e->wide_barriers = env_flag("OMNI_VK_WIDE_BARRIERS");
    e->mv_old = env_flag("OMNI_VK_MV_OLD");
    e->mv_plain = vk_env_now("OMNI_VK_MV_PLAIN", 1);
    e->q8_int8 = vk_env_now("OMNI_VK_Q8_INT8", 1) != 0;
    e->q8_rsg = vk_env_now("OMNI_VK_Q8_RSG", 0);
    e->q8_wg = vk_env_now("OMNI_VK_Q8_WG", 0);
    e->q8_seq = vk_env_now("OMNI_VK_Q8_SEQ", 0);
    e->q8_seq_down = vk_env_now("OMNI_VK_Q8_SEQ_DOWN", 0);
    e->q8_rsg_gu = vk_env_now("OMNI_VK_Q8_RSG_GU", 0);
    e->q8_hb = vk_env_now("OMNI_VK_Q8_HB", 0);
    e->q8_rsg_down = vk_env_now("OMNI_VK_Q8_RSG_DOWN", 0);
    e->q8_wg_down = vk_env_now("OMNI_VK_Q8_WG_DOWN", 0);
    e->router_rows = vk_env_now("OMNI_VK_ROUTER_ROWS", 0);
    e->attn_fuse = vk_env_now("OMNI_VK_ATTN_FUSE", 1);
    e->attn_chunk = vk_env_now("OMNI_VK_ATTN_CHUNK", 0);
    e->attn_wg = vk_env_now("OMNI_VK_ATTN_WG", 0);
    e->kv_f32 = env_flag("OMNI_VK_KV_F32");
    e->chain = vk_env_now("OMNI_VK_CHAIN", 1);
    e->trace = vk_env_now("OMNI_VK_TRACE", 0);
    e->route_defer = vk_env_now("OMNI_VK_ROUTE_DEFER", 1);
    e->route_fold = vk_env_now("OMNI_VK_ROUTE_FOLD", 1);
    e->pipe_stats = env_flag("OMNI_VK_PIPELINE_STATS");
    e->attn_prof = env_flag("OMNI_VK_ATTN_PROF");
    e->spin_us = vk_env_now("OMNI_VK_SPIN_US", 2000);
}

const char *vk_result_str(VkResult r) {
    switch (r) {
    case VK_SUCCESS: return "VK_SUCCESS";
    case VK_NOT_READY: return "VK_NOT_READY";
    case VK_TIMEOUT: return "VK_TIMEOUT";
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY";
    case VK_ERROR_INVALID_SHADER_NV: return "VK_ERROR_INVALID_SHADER_NV";
    default: return "VkResult error";
    }
}

void vk_fail(vk_ctx *c, const char *fmt, ...) {
    if (c->base.failed) return; /* keep the first reason */
    c->base.failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->base.err, sizeof c->base.err, fmt, ap);
    va_end(ap);
    omni_log(OMNI_LOG_ERROR, "vulkan: %s", c->base.err);
}

static void set_err(char *err, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t cap, const char *fmt, ...) {
    if (!err || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* ---- instance ---------------------------------------------------------------------------------------------------- */

static VKAPI_ATTR VkBool32 VKAPI_CALL on_message(VkDebugUtilsMessageSeverityFlagBitsEXT sev,
                                                 VkDebugUtilsMessageTypeFlagsEXT types,
                                                 const VkDebugUtilsMessengerCallbackDataEXT *data, void *user) {
    (void)types;
    vk_ctx *c = user;
    int level = OMNI_LOG_DEBUG;
    if (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
        level = OMNI_LOG_ERROR;
        if (c) c->validation_errors++;
    } else if (sev & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT)
        level = OMNI_LOG_WARN;
    omni_log(level, "vulkan validation: %s", data && data->pMessage ? data->pMessage : "(no message)");
    return VK_FALSE;
}

static int has_layer(const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceLayerProperties(&n, NULL) != VK_SUCCESS || !n) return 0;
    VkLayerProperties *p = calloc(n, sizeof *p);
    if (!p) return 0;
    int found = 0;
    if (vkEnumerateInstanceLayerProperties(&n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++)
            if (!strcmp(p[i].layerName, name)) found = 1;
    free(p);
    return found;
}

static int has_instance_ext(const char *layer, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, NULL) != VK_SUCCESS || !n) return 0;
    VkExtensionProperties *p = calloc(n, sizeof *p);
    if (!p) return 0;
    int found = 0;
    if (vkEnumerateInstanceExtensionProperties(layer, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++)
            if (!strcmp(p[i].extensionName, name)) found = 1;
    free(p);
    return found;
}

/* ---- keeping drivers loaded ------------------------------------------------------------------------------------- */
/* The loader dlopens the drivers (ICDs) at vkCreateInstance and dlcloses them at vkDestroyInstance, so every
 * instance pays the driver's start-up again (`omni devices` makes three), and memory a driver allocated once for
 * itself becomes unreachable when it is unmapped — which LeakSanitizer reports as leaks at exit. Pinning the shared
 * objects that the first instance brought in (one extra dlopen reference each) keeps them for the process. */
typedef struct {
    char **names;
    int n, cap;
} so_list;

static int collect_so(struct dl_phdr_info *info, size_t size, void *ud) {
    (void)size;
    so_list *l = ud;
    if (!info->dlpi_name || !info->dlpi_name[0]) return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        char **nn = realloc(l->names, sizeof *nn * (size_t)cap);
        if (!nn) return 1;
        l->names = nn;
        l->cap = cap;
    }
    l->names[l->n] = strdup(info->dlpi_name);
    if (l->names[l->n]) l->n++;
    return 0;
}

static void so_free(so_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int g_pinned;
static pthread_mutex_t g_pin_lock = PTHREAD_MUTEX_INITIALIZER;

/* pins every shared object loaded now that was not in `before` */
static void pin_new_objects(so_list *before) {
    so_list now = { 0 };
    dl_iterate_phdr(collect_so, &now);
    for (int i = 0; i < now.n; i++) {
        int known = 0;
        for (int j = 0; j < before->n && !known; j++) known = !strcmp(now.names[i], before->names[j]);
        if (!known) (void)dlopen(now.names[i], RTLD_NOW | RTLD_NOLOAD); /* reference kept on purpose */
    }
    so_free(&now);
}

static VkResult make_instance_raw(vk_ctx *c, int validation, VkInstance *out);

/* Creates the instance (see make_instance_raw), pinning the drivers the first time. */
static VkResult make_instance(vk_ctx *c, int validation, VkInstance *out) {
    so_list before = { 0 };
    pthread_mutex_lock(&g_pin_lock);
    if (!g_pinned) dl_iterate_phdr(collect_so, &before);
    VkResult r = make_instance_raw(c, validation, out);
    if (r == VK_SUCCESS && !g_pinned) {
        uint32_t n = 0; /* the loader opens the drivers lazily: enumerate to be sure they are in */
        vkEnumeratePhysicalDevices(*out, &n, NULL);
        pin_new_objects(&before);
        g_pinned = 1;
    }
    pthread_mutex_unlock(&g_pin_lock);
    so_free(&before);
    return r;
}

/* Creates the instance; with c != NULL and validation requested, also the layer and a messenger into omni_log. */
static VkResult make_instance_raw(vk_ctx *c, int validation, VkInstance *out) {
    const char *layers[1], *exts[2];
    uint32_t n_layers = 0, n_exts = 0;
    int want_msgr = 0, features = 0;
    if (validation) {
        const char *vl = "VK_LAYER_KHRONOS_validation";
        if (has_layer(vl)) {
            layers[n_layers++] = vl;
            if (has_instance_ext(NULL, VK_EXT_DEBUG_UTILS_EXTENSION_NAME) ||
                has_instance_ext(vl, VK_EXT_DEBUG_UTILS_EXTENSION_NAME)) {
                exts[n_exts++] = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
                want_msgr = 1;
            }
            if (validation < 2 && has_instance_ext(vl, VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME)) {
                exts[n_exts++] = VK_EXT_VALIDATION_FEATURES_EXTENSION_NAME;
                features = 1;
            }
        } else
            omni_log(OMNI_LOG_WARN, "vulkan: OMNI_VK_VALIDATION set but VK_LAYER_KHRONOS_validation is not installed");
    }
    VkDebugUtilsMessengerCreateInfoEXT mci = {
        .sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT,
        .messageSeverity =
            VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT,
        .messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                       VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT,
        .pfnUserCallback = on_message,
        .pUserData = c,
    };
    /* shader validation (the layer re-specialises and re-validates every pipeline's SPIR-V) costs seconds per
     * pipeline on lavapipe; the blobs are spirv-val'd at build time, so it is on only with OMNI_VK_VALIDATION=2 */
    VkValidationFeatureDisableEXT disables[] = { VK_VALIDATION_FEATURE_DISABLE_SHADERS_EXT };
    VkValidationFeaturesEXT vf = {
        .sType = VK_STRUCTURE_TYPE_VALIDATION_FEATURES_EXT,
        .disabledValidationFeatureCount = 1,
        .pDisabledValidationFeatures = disables,
    };
    if (features) mci.pNext = &vf;
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "omni",
        .pEngineName = "omni",
        .apiVersion = VK_API_VERSION_1_3,
    };
    VkInstanceCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pNext = want_msgr ? (const void *)&mci : features ? (const void *)&vf : NULL,
        .pApplicationInfo = &app,
        .enabledLayerCount = n_layers,
        .ppEnabledLayerNames = layers,
        .enabledExtensionCount = n_exts,
        .ppEnabledExtensionNames = exts,
    };
    VkResult r = vkCreateInstance(&ci, NULL, out);
    if (r != VK_SUCCESS || !c || !want_msgr) return r;
    PFN_vkCreateDebugUtilsMessengerEXT create =
        (PFN_vkCreateDebugUtilsMessengerEXT)vkGetInstanceProcAddr(*out, "vkCreateDebugUtilsMessengerEXT");
    mci.pNext = NULL;
    if (create && create(*out, &mci, NULL, &c->messenger) == VK_SUCCESS) c->validation_active = 1;
    return VK_SUCCESS;
}

/* ---- probing ----------------------------------------------------------------------------------------------------- */

typedef struct {
    VkExtensionProperties *ext;
    uint32_t n;
} ext_list;

static int has_ext(const ext_list *l, const char *name) {
    for (uint32_t i = 0; i < l->n; i++)
        if (!strcmp(l->ext[i].extensionName, name)) return 1;
    return 0;
}

static const char *type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "cpu";
    default: return "other";
    }
}

/* Fills the capabilities (cap) and the listing (info) of one physical device, as the hardware reports them. */
static void probe(VkPhysicalDevice pd, vk_caps *cap, ob_vk_device_info *info, ext_list *exts_out) {
    memset(cap, 0, sizeof *cap);
    memset(info, 0, sizeof *info);
    ext_list el = { 0 };
    vkEnumerateDeviceExtensionProperties(pd, NULL, &el.n, NULL);
    el.ext = calloc(el.n ? el.n : 1, sizeof *el.ext);
    if (el.ext) vkEnumerateDeviceExtensionProperties(pd, NULL, &el.n, el.ext);
    else el.n = 0;

    VkPhysicalDeviceProperties base;
    vkGetPhysicalDeviceProperties(pd, &base);
    cap->api = base.apiVersion;
    int v12 = VK_API_VERSION_MINOR(base.apiVersion) >= 2 || VK_API_VERSION_MAJOR(base.apiVersion) > 1;
    int v13 = VK_API_VERSION_MINOR(base.apiVersion) >= 3 || VK_API_VERSION_MAJOR(base.apiVersion) > 1;

    /* properties */
    VkPhysicalDeviceSubgroupProperties sgp = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES };
    VkPhysicalDeviceDriverProperties drv = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_DRIVER_PROPERTIES };
    VkPhysicalDeviceShaderIntegerDotProductProperties dotp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_PROPERTIES
    };
    VkPhysicalDeviceProperties2 p2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sgp };
    if (v12) {
        drv.pNext = p2.pNext;
        p2.pNext = &drv;
    }
    VkPhysicalDeviceSubgroupSizeControlProperties szp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_PROPERTIES
    };
    if (v13 || has_ext(&el, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME)) {
        szp.pNext = p2.pNext;
        p2.pNext = &szp;
    }
    int dot_ok = v13 || has_ext(&el, VK_KHR_SHADER_INTEGER_DOT_PRODUCT_EXTENSION_NAME);
    if (dot_ok) {
        dotp.pNext = p2.pNext;
        p2.pNext = &dotp;
    }
    /* the compute-unit count (a resident kernel's grid): NVIDIA's SM count, AMD's engines x arrays x CUs */
    VkPhysicalDeviceShaderSMBuiltinsPropertiesNV smp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_SM_BUILTINS_PROPERTIES_NV
    };
    VkPhysicalDeviceShaderCorePropertiesAMD amdp = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CORE_PROPERTIES_AMD };
    if (has_ext(&el, VK_NV_SHADER_SM_BUILTINS_EXTENSION_NAME)) {
        smp.pNext = p2.pNext;
        p2.pNext = &smp;
    }
    if (has_ext(&el, VK_AMD_SHADER_CORE_PROPERTIES_EXTENSION_NAME)) {
        amdp.pNext = p2.pNext;
        p2.pNext = &amdp;
    }
    int has_cm2 = has_ext(&el, "VK_NV_cooperative_matrix2") && has_ext(&el, "VK_KHR_cooperative_matrix");
    ob_coopmat2_props cm2p = { .sType = OB_STYPE_COOPMAT2_PROPS };
    if (has_cm2) {
        cm2p.pNext = p2.pNext;
        p2.pNext = &cm2p;
    }
    vkGetPhysicalDeviceProperties2(pd, &p2);

    /* features */
    VkPhysicalDeviceVulkan11Features f11 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES };
    VkPhysicalDeviceVulkan12Features f12 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES };
    VkPhysicalDeviceShaderIntegerDotProductFeatures fdot = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_INTEGER_DOT_PRODUCT_FEATURES
    };
    VkPhysicalDeviceSubgroupSizeControlFeatures fsz = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_SIZE_CONTROL_FEATURES
    };
    VkPhysicalDeviceCooperativeMatrixFeaturesNV fcnv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV
    };
    ob_coopmat_khr_features fckhr = { .sType = OB_STYPE_COOPMAT_KHR_FEATURES };
    ob_bf16_features fbf = { .sType = OB_STYPE_BF16_FEATURES };
    ob_coopmat2_features fcm2 = { .sType = OB_STYPE_COOPMAT2_FEATURES };
    VkPhysicalDeviceFeatures2 f2 = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2 };
    void **tail = &f2.pNext;
#define CHAIN(s) do { *tail = &(s); tail = &(s).pNext; } while (0)
    if (v12) {
        CHAIN(f11);
        CHAIN(f12);
    }
    if (dot_ok) CHAIN(fdot);
    if (v13 || has_ext(&el, VK_EXT_SUBGROUP_SIZE_CONTROL_EXTENSION_NAME)) CHAIN(fsz);
    if (has_ext(&el, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME)) CHAIN(fcnv);
    if (has_ext(&el, "VK_KHR_cooperative_matrix")) CHAIN(fckhr);
    if (has_ext(&el, "VK_KHR_shader_bfloat16")) CHAIN(fbf);
    if (has_cm2) CHAIN(fcm2);
#undef CHAIN
    vkGetPhysicalDeviceFeatures2(pd, &f2);

    cap->subgroup_size = sgp.subgroupSize;
    int compute_sg = (sgp.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
    cap->sg_arith = compute_sg && (sgp.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT) &&
                    (sgp.supportedOperations & VK_SUBGROUP_FEATURE_BASIC_BIT);
    cap->sg_shuffle = compute_sg && (sgp.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT);
    cap->sg_size_control = fsz.subgroupSizeControl;
    cap->sg_min = szp.minSubgroupSize ? szp.minSubgroupSize : sgp.subgroupSize;
    cap->sg_max = szp.maxSubgroupSize ? szp.maxSubgroupSize : sgp.subgroupSize;
    /* a pipeline may require a size only on 1.3 devices (vk_device_open enables the feature there only), and the
     * 256-thread kernels need 8 subgroups of 32 in a workgroup */
    cap->sg_req_compute = v13 && (szp.requiredSubgroupSizeStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0 &&
                          szp.maxComputeWorkgroupSubgroups >= 8;
    cap->fp16 = f12.shaderFloat16;
    cap->int8 = f12.shaderInt8;
    cap->storage16 = f11.storageBuffer16BitAccess;
    cap->storage8 = f12.storageBuffer8BitAccess;
    cap->int64 = f2.features.shaderInt64;
    cap->fp64 = f2.features.shaderFloat64;
    cap->bf16 = fbf.shaderBFloat16Type;
    cap->int_dot = fdot.shaderIntegerDotProduct;
    cap->int_dot_accel = cap->int_dot && dotp.integerDotProduct4x8BitPackedSignedAccelerated;
    cap->coopmat_nv = fcnv.cooperativeMatrix;
    cap->coopmat_khr = fckhr.cooperativeMatrix;
    cap->coopmat2_nv = has_ext(&el, "VK_NV_cooperative_matrix2");
    /* what matmul_cm2.comp needs of it; the shapes (vk_device_open) and the shader's presence decide cap->cm2 */
    cap->cm2 = has_cm2 && fckhr.cooperativeMatrix && fcm2.cooperativeMatrixWorkgroupScope &&
               fcm2.cooperativeMatrixFlexibleDimensions && fcm2.cooperativeMatrixTensorAddressing &&
               fcm2.cooperativeMatrixBlockLoads && cm2p.cooperativeMatrixWorkgroupScopeMaxWorkgroupSize >= 256;
    cap->vmm = f12.vulkanMemoryModel;
    cap->bda = f12.bufferDeviceAddress;
    cap->max_alloc = 0;
    cap->max_storage_range = base.limits.maxStorageBufferRange;
    cap->max_shared = base.limits.maxComputeSharedMemorySize;
    cap->max_push = base.limits.maxPushConstantsSize;
    cap->max_wg_invocations = base.limits.maxComputeWorkGroupInvocations;
    cap->compute_units = smp.shaderSMCount ? smp.shaderSMCount
                                           : amdp.shaderEngineCount * amdp.shaderArraysPerEngineCount *
                                                 amdp.computeUnitsPerShaderArray;
    for (int i = 0; i < 3; i++) cap->max_wg_count[i] = base.limits.maxComputeWorkGroupCount[i];
    cap->timestamp_period = base.limits.timestampComputeAndGraphics ? base.limits.timestampPeriod : 0.0f;
    if (v12) {
        VkPhysicalDeviceMaintenance3Properties m3 = {.sType =
                                                         VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
        VkPhysicalDeviceProperties2 pp = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3 };
        vkGetPhysicalDeviceProperties2(pd, &pp);
        cap->max_alloc = m3.maxMemoryAllocationSize;
    }
    if (!cap->max_alloc) cap->max_alloc = (VkDeviceSize)1 << 30;

    snprintf(info->name, sizeof info->name, "%s", base.deviceName);
    snprintf(info->type, sizeof info->type, "%s", type_name(base.deviceType));
    if (v12) snprintf(info->driver, sizeof info->driver, "%.63s %.95s", drv.driverName, drv.driverInfo);
    else snprintf(info->driver, sizeof info->driver, "driver 0x%x", base.driverVersion);
    info->api_version = base.apiVersion;
    info->vendor_id = base.vendorID;
    info->device_id = base.deviceID;
    VkPhysicalDeviceMemoryProperties mp;
    vkGetPhysicalDeviceMemoryProperties(pd, &mp);
    info->n_heaps = (int32_t)(mp.memoryHeapCount < OB_VK_MAX_HEAPS ? mp.memoryHeapCount : OB_VK_MAX_HEAPS);
    for (int i = 0; i < info->n_heaps; i++) {
        info->heap_bytes[i] = mp.memoryHeaps[i].size;
        info->heap_device_local[i] = (mp.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) != 0;
    }
    info->subgroup_size = cap->subgroup_size;
    info->subgroup_arith = cap->sg_arith;
    info->subgroup_shuffle = cap->sg_shuffle;
    info->subgroup_size_control = cap->sg_size_control;
    info->fp16 = cap->fp16;
    info->int8 = cap->int8;
    info->storage16 = cap->storage16;
    info->storage8 = cap->storage8;
    info->int64 = cap->int64;
    info->fp64 = cap->fp64;
    info->bf16 = cap->bf16;
    info->int_dot = cap->int_dot;
    info->int_dot_accel = cap->int_dot_accel;
    info->coopmat_nv = cap->coopmat_nv;
    info->coopmat_khr = cap->coopmat_khr;
    info->coopmat2_nv = cap->coopmat2_nv;
    info->bda = cap->bda;
    info->timestamps = cap->timestamp_period > 0;
    info->max_alloc = cap->max_alloc;
    info->max_storage_range = cap->max_storage_range;
    info->max_shared = cap->max_shared;
    info->max_push = cap->max_push;
    info->max_wg_invocations = cap->max_wg_invocations;
    info->compute_units = cap->compute_units;
    info->usable = 1;
    if (!v12) {
        info->usable = 0;
        snprintf(info->why_unusable, sizeof info->why_unusable, "needs Vulkan 1.2 (device has %u.%u)",
                 VK_API_VERSION_MAJOR(base.apiVersion), VK_API_VERSION_MINOR(base.apiVersion));
    } else if (!cap->bda || !cap->int64) {
        info->usable = 0;
        snprintf(info->why_unusable, sizeof info->why_unusable, "no %s",
                 !cap->bda ? "bufferDeviceAddress" : "shaderInt64");
    } else if (cap->max_push < 128) {
        info->usable = 0;
        snprintf(info->why_unusable, sizeof info->why_unusable, "push constants < 128 bytes");
    }
    if (exts_out) *exts_out = el;
    else free(el.ext);
}

static int rank_type(const char *type) {
    if (!strcmp(type, "discrete")) return 4;
    if (!strcmp(type, "integrated")) return 3;
    if (!strcmp(type, "virtual")) return 2;
    if (!strcmp(type, "cpu")) return 1;
    return 0;
}

/* Chooses among listed devices: the requested index, or the best type (first of equals). */
static int choose(const ob_vk_device_info *info, int n, int want) {
    if (want >= 0) return want < n && info[want].usable ? want : -1;
    int best = -1, best_rank = -1;
    for (int i = 0; i < n; i++)
        if (info[i].usable && rank_type(info[i].type) > best_rank) {
            best = i;
            best_rank = rank_type(info[i].type);
        }
    return best;
}

static void apply_env(vk_caps *cap, const vk_env *e);
static int cm_khr_shape(VkInstance inst, VkPhysicalDevice pd);
static int cm_flavour(const vk_caps *cap, int env_khr);

int ob_vulkan_list_devices(ob_vk_device_info *out, int cap, char *err, size_t err_cap) {
    VkInstance inst;
    VkResult r = make_instance(NULL, 0, &inst);
    if (r == VK_ERROR_INCOMPATIBLE_DRIVER || r == VK_ERROR_INITIALIZATION_FAILED) return 0; /* no driver at all */
    if (r != VK_SUCCESS) {
        set_err(err, err_cap, "vkCreateInstance: %s", vk_result_str(r));
        return OMNI_E_BACKEND;
    }
    uint32_t n = 0;
    vkEnumeratePhysicalDevices(inst, &n, NULL);
    VkPhysicalDevice *pd = calloc(n ? n : 1, sizeof *pd);
    if (!pd) {
        vkDestroyInstance(inst, NULL);
        return OMNI_E_NOMEM;
    }
    vkEnumeratePhysicalDevices(inst, &n, pd);
    vk_env env;
    vk_env_read(&env);
    for (uint32_t i = 0; i < n && (int)i < cap; i++) {
        vk_caps c;
        probe(pd[i], &c, &out[i], NULL);
        int shapes = c.coopmat_khr ? cm_khr_shape(inst, pd[i]) : 0;
        c.cm_khr16 = (shapes & 1) != 0;
        out[i].cm_khr_bf16 = (shapes & 2) != 0;
        apply_env(&c, &env);
        out[i].cm_kernels = cm_flavour(&c, env.cm_khr);
    }
    free(pd);
    vkDestroyInstance(inst, NULL);
    return (int)n;
}

int ob_vulkan_default_device(void) {
    ob_vk_device_info info[16];
    int n = ob_vulkan_list_devices(info, 16, NULL, 0);
    if (n <= 0) return -1;
    return choose(info, n < 16 ? n : 16, -1);
}

/* ---- the logical device ---------------------------------------------------------------------------------------- */

/* Turns off what the environment switches disable, so kernels and device creation see the same set. */
static void apply_env(vk_caps *cap, const vk_env *e) {
    if (e->no_fp16) cap->fp16 = 0;
    if (e->no_int8) cap->int8 = 0;
    if (e->no_16bit) cap->storage16 = 0;
    if (e->no_8bit) cap->storage8 = 0;
    if (e->no_bf16) cap->bf16 = 0;
    if (e->no_int_dot) cap->int_dot = cap->int_dot_accel = 0;
    if (e->no_coopmat) cap->coopmat_nv = cap->coopmat_khr = cap->coopmat2_nv = cap->cm2 = 0;
    if (e->no_subgroup) cap->sg_arith = cap->sg_shuffle = 0;
    if (e->no_fp64) cap->fp64 = 0;
}

/* matmul_cm2.comp's operand types as a workgroup-scope shape of the flexible-dimension list: fp16 x fp16 -> fp32
 * for 256 invocations (its tiles must be multiples of the granularities: vk_coopmat.c checks); cap->cm2 stays on
 * only with it, fp16 arithmetic and 16-bit storage, and the shader in the build. cm2_bf16 notes a bf16 shape. */
static void cm2_shapes(vk_ctx *c) {
    vk_caps *cap = &c->caps;
    int ok = 0;
    cap->cm2_bf16 = 0;
    if (cap->cm2 && cap->fp16 && cap->storage16 && vk_shader_table[SH_MATMUL_CM2].words) {
        ob_pfn_flex_props get = (ob_pfn_flex_props)vkGetInstanceProcAddr(
            c->inst, "vkGetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV");
        uint32_t n = 0;
        if (get && get(c->phys, &n, NULL) == VK_SUCCESS && n > 0 && n < 4096) {
            ob_coopmat_flex_props *p = calloc(n, sizeof *p);
            if (p) {
                for (uint32_t i = 0; i < n; i++) p[i].sType = OB_STYPE_COOPMAT_FLEX_PROPS;
                if (get(c->phys, &n, p) == VK_SUCCESS)
                    for (uint32_t i = 0; i < n; i++) {
                        if (p[i].scope != OB_SCOPE_WORKGROUP || p[i].workgroupInvocations != 256) continue;
                        if (p[i].CType != OB_CT_F32 || p[i].ResultType != OB_CT_F32) continue;
                        if (p[i].AType == OB_CT_BF16 && p[i].BType == OB_CT_BF16) cap->cm2_bf16 = 1;
                        if (p[i].AType == OB_CT_F16 && p[i].BType == OB_CT_F16 && !ok) {
                            ok = 1;
                            cap->cm2_gran[0] = p[i].MGranularity;
                            cap->cm2_gran[1] = p[i].NGranularity;
                            cap->cm2_gran[2] = p[i].KGranularity;
                        }
                    }
                free(p);
            }
        }
    }
    cap->cm2 = ok;
}

/* Which subgroup-scope 16 x 16 x 16 shapes with fp32 sums VK_KHR_cooperative_matrix lists: bit 0 fp16 x fp16 (the
 * shape of cm.glsl, which the KHR builds need), bit 1 bf16 x bf16 (none of our kernels uses it yet; `omni devices`
 * reports it: bf16 operands would spare the GEMMs their conversion of bf16 weights) */
static int cm_khr_shape(VkInstance inst, VkPhysicalDevice pd) {
    ob_pfn_khr_props get =
        (ob_pfn_khr_props)vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR");
    uint32_t n = 0;
    if (!get || get(pd, &n, NULL) != VK_SUCCESS || n == 0 || n >= 4096) return 0;
    ob_coopmat_khr_props *p = calloc(n, sizeof *p);
    if (!p) return 0;
    int ok = 0;
    for (uint32_t i = 0; i < n; i++) p[i].sType = OB_STYPE_COOPMAT_KHR_PROPS;
    if (get(pd, &n, p) == VK_SUCCESS)
        for (uint32_t i = 0; i < n; i++) {
            if (p[i].scope != OB_SCOPE_SUBGROUP || p[i].MSize != 16 || p[i].NSize != 16 || p[i].KSize != 16 ||
                p[i].CType != OB_CT_F32 || p[i].ResultType != OB_CT_F32 || p[i].AType != p[i].BType)
                continue;
            if (p[i].AType == OB_CT_F16) ok |= 1;
            if (p[i].AType == OB_CT_BF16) ok |= 2;
        }
    free(p);
    return ok;
}

/* Which cooperative-matrix flavour the tensor-core kernels (matmul_cm.comp, attn_flash_cm.comp) run, 0 none, 1 NV,
 * 2 KHR. The KHR twins wherever the device lists their shape and the build has them (GLSLC2): AMD (RADV) has only
 * KHR, and on NVIDIA the same source compiled for KHR runs faster than the NV build (H100, pp512 of the
 * thinker: BF16 14,408 -> 15,644 t/s, Q8_0 14,236 -> 15,682; the grouped expert GEMMs 13.85 -> 12.34 ms per pass,
 * the prefill attention 2.78 -> 2.36; docs/benchmarks.md, session 11). They need 32-wide subgroups, required per
 * pipeline where the device's default differs (AMD's wave64). Else the NV builds (Debian 12's glslc) on 32-wide
 * subgroups. env_khr (OMNI_VK_CM_KHR): 0 never the KHR builds (the NV ones where they run), else the default. */
static int cm_flavour(const vk_caps *cap, int env_khr) {
    if (!cap->fp16) return 0;
    int sg32 = cap->subgroup_size == 32 ||
               (cap->sg_size_control && cap->sg_req_compute && cap->sg_min <= 32 && cap->sg_max >= 32);
    int khr = env_khr != 0 && cap->coopmat_khr && cap->cm_khr16 && sg32 && vk_shader_table[SH_MATMUL_CM].words_khr;
    if (khr) return 2;
    return cap->coopmat_nv && cap->subgroup_size == 32 ? 1 : 0;
}

/* The device's create-info under construction: the extensions to enable and the end of the feature chain */
typedef struct {
    const char *exts[8];
    uint32_t n;
    void **tail;
} dev_chain;

/* enables extension name (NULL: a core feature struct only) with its feature struct feat */
static void chain_ext(dev_chain *d, const char *name, void *feat) {
    if (name && d->n < sizeof d->exts / sizeof *d->exts) d->exts[d->n++] = name;
    *d->tail = feat;
    d->tail = (void **)&((VkBaseOutStructure *)feat)->pNext;
}

/* what the device offers of one optional feature struct, queried alone (its pNext is left NULL) */
static void query_feature(VkPhysicalDevice pd, void *feat) {
    VkPhysicalDeviceFeatures2 q = { .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = feat };
    vkGetPhysicalDeviceFeatures2(pd, &q);
    ((VkBaseOutStructure *)feat)->pNext = NULL;
}

int vk_device_open(vk_ctx *c, int index, char *err, size_t errcap) {
    VkResult r = make_instance(c, c->env.validation, &c->inst);
    if (r != VK_SUCCESS) {
        set_err(err, errcap, "no Vulkan driver (vkCreateInstance: %s)", vk_result_str(r));
        c->inst = VK_NULL_HANDLE;
        return OMNI_E_BACKEND;
    }
    uint32_t n = 0;
    vkEnumeratePhysicalDevices(c->inst, &n, NULL);
    if (!n) {
        set_err(err, errcap, "no Vulkan device found");
        return OMNI_E_BACKEND;
    }
    VkPhysicalDevice *pd = calloc(n, sizeof *pd);
    ob_vk_device_info *info = calloc(n, sizeof *info);
    if (!pd || !info) {
        free(pd);
        free(info);
        set_err(err, errcap, "out of memory");
        return OMNI_E_NOMEM;
    }
    vkEnumeratePhysicalDevices(c->inst, &n, pd);
    vk_caps caps;
    for (uint32_t i = 0; i < n; i++) probe(pd[i], &caps, &info[i], NULL);
    int pick = choose(info, (int)n, index);
    if (pick < 0) {
        if (index >= (int)n) set_err(err, errcap, "Vulkan device %d does not exist (%u found)", index, n);
        else if (index >= 0) set_err(err, errcap, "Vulkan device %d (%s) unusable: %s", index, info[index].name,
                                     info[index].why_unusable);
        else set_err(err, errcap, "no usable Vulkan device (%s: %s)", info[0].name, info[0].why_unusable);
        free(pd);
        free(info);
        return OMNI_E_BACKEND;
    }
    c->phys = pd[pick];
    snprintf(c->name, sizeof c->name, "%s", info[pick].name);
    free(pd);
    free(info);
    ob_vk_device_info me;
    ext_list el;
    probe(c->phys, &c->caps, &me, &el);
    apply_env(&c->caps, &c->env);
    cm2_shapes(c);
    c->caps.cm_khr16 = c->caps.coopmat_khr && (cm_khr_shape(c->inst, c->phys) & 1);
    c->cm_khr = cm_flavour(&c->caps, c->env.cm_khr) == 2;
    c->cm_sg32 = c->cm_khr && c->caps.subgroup_size != 32;
    if (c->cm_khr) c->caps.coopmat_nv = 0; /* one flavour: the NV extension is not enabled */
    int v13 = VK_API_VERSION_MINOR(c->caps.api) >= 3 || VK_API_VERSION_MAJOR(c->caps.api) > 1;
    vkGetPhysicalDeviceMemoryProperties(c->phys, &c->memprops);

    /* one compute queue: the first family with compute (on NVIDIA the graphics+compute family) */
    uint32_t nf = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nf, NULL);
    VkQueueFamilyProperties *qf = calloc(nf ? nf : 1, sizeof *qf);
    if (!qf) {
        free(el.ext);
        return OMNI_E_NOMEM;
    }
    vkGetPhysicalDeviceQueueFamilyProperties(c->phys, &nf, qf);
    int fam = -1;
    for (uint32_t i = 0; i < nf && fam < 0; i++)
        if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) fam = (int)i;
    if (fam >= 0 && qf[fam].timestampValidBits == 0) c->caps.timestamp_period = 0;
    free(qf);
    if (fam < 0) {
        free(el.ext);
        set_err(err, errcap, "%s: no compute queue", c->name);
        return OMNI_E_BACKEND;
    }
    c->qfam = (uint32_t)fam;

    /* features to enable: the minimum plus whatever optional feature survived the environment switches */
    VkPhysicalDeviceVulkan11Features f11 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES,
        .storageBuffer16BitAccess = (VkBool32)c->caps.storage16,
    };
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .pNext = &f11,
        .bufferDeviceAddress = VK_TRUE,
        .shaderFloat16 = (VkBool32)c->caps.fp16,
        .shaderInt8 = (VkBool32)c->caps.int8,
        .storageBuffer8BitAccess = (VkBool32)c->caps.storage8,
    };
    VkPhysicalDeviceVulkan13Features f13 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES,
        .subgroupSizeControl = (VkBool32)c->caps.sg_size_control,
        .shaderIntegerDotProduct = (VkBool32)c->caps.int_dot,
    };
    VkPhysicalDeviceCooperativeMatrixFeaturesNV fcnv = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV,
        .cooperativeMatrix = VK_TRUE,
    };
    ob_coopmat_khr_features fckhr = { .sType = OB_STYPE_COOPMAT_KHR_FEATURES, .cooperativeMatrix = VK_TRUE };
    ob_bf16_features fbf = { .sType = OB_STYPE_BF16_FEATURES, .shaderBFloat16Type = VK_TRUE };
    ob_coopmat2_features fcm2 = {
        .sType = OB_STYPE_COOPMAT2_FEATURES,
        .cooperativeMatrixWorkgroupScope = VK_TRUE,
        .cooperativeMatrixFlexibleDimensions = VK_TRUE,
        .cooperativeMatrixTensorAddressing = VK_TRUE,
        .cooperativeMatrixBlockLoads = VK_TRUE,
    };
    if (c->caps.cm2 && c->caps.vmm) f12.vulkanMemoryModel = VK_TRUE; /* matmul_cm2's SPIR-V declares it */
    VkPhysicalDeviceFeatures2 f2 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2,
        .pNext = &f12,
        .features = { .shaderInt64 = VK_TRUE, .shaderFloat64 = (VkBool32)c->caps.fp64 },
    };
    dev_chain dc = { .n = 0, .tail = &f11.pNext };
    if (v13) {
        chain_ext(&dc, NULL, &f13);
    } else {
        /* 1.2 devices: size control and integer dot product would need their extensions; report only */
        c->caps.sg_size_control = 0;
        c->caps.int_dot = c->caps.int_dot_accel = 0;
    }
    if (c->caps.coopmat_nv) chain_ext(&dc, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME, &fcnv);
    /* one flavour at a time: the NV one is what glslc compiles; the NV cooperative matrix 2 GEMM (matmul_cm2.comp,
     * GLSLC2) is written against KHR cooperative matrix, so with it both are enabled */
    if (c->caps.coopmat_nv && !c->caps.cm2) c->caps.coopmat_khr = 0;
    if (c->caps.cm2 || c->cm_khr) c->caps.coopmat_khr = 1;
    if (c->caps.coopmat_khr) chain_ext(&dc, "VK_KHR_cooperative_matrix", &fckhr);
    if (c->caps.bf16) chain_ext(&dc, "VK_KHR_shader_bfloat16", &fbf);
    if (c->caps.cm2) chain_ext(&dc, "VK_NV_cooperative_matrix2", &fcm2);
    /* OMNI_VK_PIPELINE_STATS=1: the driver's per-pipeline statistics (registers, shared memory, ...) for
     * ob_vulkan_pipeline_stats, where VK_KHR_pipeline_executable_properties is there */
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR fpe = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR
    };
    c->pipe_stats = 0;
    if (c->env.pipe_stats && has_ext(&el, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME)) {
        query_feature(c->phys, &fpe);
        if (fpe.pipelineExecutableInfo) {
            chain_ext(&dc, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME, &fpe);
            c->pipe_stats = 1;
        }
    }
    /* OMNI_VK_ATTN_PROF=1: the shader clocks of attn_decode_prof (vk_decode.c), where VK_KHR_shader_clock is there */
    VkPhysicalDeviceShaderClockFeaturesKHR fclk = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_CLOCK_FEATURES_KHR
    };
    c->shader_clock = 0;
    if (c->env.attn_prof && has_ext(&el, VK_KHR_SHADER_CLOCK_EXTENSION_NAME)) {
        query_feature(c->phys, &fclk);
        if (fclk.shaderSubgroupClock && fclk.shaderDeviceClock) {
            chain_ext(&dc, VK_KHR_SHADER_CLOCK_EXTENSION_NAME, &fclk);
            c->shader_clock = 1;
        }
    }
    free(el.ext);
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = c->qfam,
        .queueCount = 1,
        .pQueuePriorities = &prio,
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f2,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .enabledExtensionCount = dc.n,
        .ppEnabledExtensionNames = dc.exts,
    };
    r = vkCreateDevice(c->phys, &dci, NULL, &c->dev);
    if (r != VK_SUCCESS) {
        c->dev = VK_NULL_HANDLE;
        set_err(err, errcap, "%s: vkCreateDevice: %s", c->name, vk_result_str(r));
        return OMNI_E_BACKEND;
    }
    vkGetDeviceQueue(c->dev, c->qfam, 0, &c->queue);
    omni_log(OMNI_LOG_INFO,
             "vulkan: %s (subgroup %u%s, fp16 %d, int8 %d, bf16 %d, int dot %d, coopmat nv %d khr %d (tensor-core "
             "kernels: %s) nv2-gemm %d [%u %u %u] bf16 %d%s)", c->name,
             c->caps.subgroup_size, vk_use_subgroups(c) ? "" : ", no subgroup ops", c->caps.fp16, c->caps.int8,
             c->caps.bf16, c->caps.int_dot, c->caps.coopmat_nv, c->caps.coopmat_khr,
             c->cm_khr ? (c->cm_sg32 ? "KHR, subgroups of 32 required" : "KHR") : c->caps.coopmat_nv ? "NV" : "none",
             c->caps.cm2, c->caps.cm2_gran[0],
             c->caps.cm2_gran[1], c->caps.cm2_gran[2], c->caps.cm2_bf16,
             c->validation_active ? ", validation on" : "");
    return OMNI_OK;
}

void vk_device_close(vk_ctx *c) {
    if (c->dev) vkDestroyDevice(c->dev, NULL);
    if (c->messenger) {
        PFN_vkDestroyDebugUtilsMessengerEXT destroy =
            (PFN_vkDestroyDebugUtilsMessengerEXT)vkGetInstanceProcAddr(c->inst, "vkDestroyDebugUtilsMessengerEXT");
        if (destroy) destroy(c->inst, c->messenger, NULL);
    }
    if (c->inst) vkDestroyInstance(c->inst, NULL);
    c->dev = VK_NULL_HANDLE;
    c->inst = VK_NULL_HANDLE;
}

int ob_vulkan_validation_errors(ob_backend *b) { return b ? vk_of(b)->validation_errors : 0; }
int ob_vulkan_validation_active(ob_backend *b) { return b ? vk_of(b)->validation_active : 0; }
