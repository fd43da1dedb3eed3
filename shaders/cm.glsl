// cm.glsl — the subgroup-scope 16 x 16 x 16 cooperative-matrix fragments of matmul_cm.comp and attn_flash_cm.comp
// in one spelling for both extensions:
//   GL_NV_cooperative_matrix (the default build, Debian 12's glslc): one fragment type per component type;
//   GL_KHR_cooperative_matrix (-DCM_KHR, the _khr builds made by the newer compiler, shaders.mk): a type per use
//     (A, B, accumulator), which is what AMD (RADV) and NVIDIA's KHR path expose.
// The kernels only use what both define the same way: loads and stores with an element offset and stride in units
// of the array's element type, a row- or column-major flag, multiply-add with fp16 operands and fp32 sums, scalar
// construction, element access through length() and [], and component-type conversion of an accumulator (KHR keeps
// the use: fp32 accumulator -> fp16 accumulator, which is stored like the NV fp16 fragment).
#ifdef CM_KHR
#extension GL_KHR_cooperative_matrix : require
#define CM_A16 coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA>
#define CM_B16 coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB>
#define CM_C32 coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define CM_C16 coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>
#define CM_LAYOUT(colmajor) ((colmajor) ? gl_CooperativeMatrixLayoutColumnMajor : gl_CooperativeMatrixLayoutRowMajor)
#define CM_LOAD(m, buf, off, stride, colmajor) coopMatLoad(m, buf, off, stride, CM_LAYOUT(colmajor))
#define CM_STORE(m, buf, off, stride, colmajor) coopMatStore(m, buf, off, stride, CM_LAYOUT(colmajor))
#define CM_MAD(a, b, c) coopMatMulAdd(a, b, c)
#else
#extension GL_NV_cooperative_matrix : require
#define CM_A16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define CM_B16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define CM_C32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>
#define CM_C16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define CM_LOAD(m, buf, off, stride, colmajor) coopMatLoadNV(m, buf, off, stride, colmajor)
#define CM_STORE(m, buf, off, stride, colmajor) coopMatStoreNV(m, buf, off, stride, colmajor)
#define CM_MAD(a, b, c) coopMatMulAddNV(a, b, c)
#endif
