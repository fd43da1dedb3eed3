# shaders.mk — GLSL compute shaders -> SPIR-V -> C headers of uint32_t words, included by the Makefile.
# Every shaders/*.comp becomes $(BUILD)/shaders/<name>.spv and <name>.h (`static const uint32_t omni_spv_<name>[]`,
# embedded by engine/vulkan/vk_shaders.c; nothing is read from disk at run time). Shaders that reduce through
# reduce.glsl are built a second time with -DNO_SUBGROUP as <name>_nosg (devices without subgroup arithmetic,
# OMNI_VK_NO_SUBGROUP); matmul also as matmul_big (larger tiles). `make test` validates every blob with spirv-val.
ifeq ($(HAVE_VULKAN),1)

SHADER_DIR   := $(BUILD)/shaders
GLSLC        ?= glslc
SPIRV_VAL    ?= spirv-val
GLSLC_FLAGS  := -fshader-stage=compute --target-env=vulkan1.2 -O -Ishaders -Iengine/vulkan
# shaders that need the newer compiler (GLSLC2, below) are not in the default set
SHADER_NEW   := matmul_cm2 matmul_cm2_moe
SHADER_NAMES := $(filter-out $(SHADER_NEW),$(basename $(notdir $(wildcard shaders/*.comp))))
# tensor-core GEMM tile shapes besides matmul_cm's 128 x 64 (weight rows x x rows; vk_coopmat.c picks one)
MATMUL_CM_TILES := 128x32 256x32 256x64 128x128
SHADER_NOSG  := matvec rms_norm attn_split moe_route qk_rope_kv mv_rows
# and the fp16-activation build of every shape (128x64 included): _x16
MATMUL_CM_VARIANTS := $(foreach t,128x64 $(MATMUL_CM_TILES),matmul_cm_$(t)_x16)
SHADER_SPV   := $(patsubst %,$(SHADER_DIR)/%.spv,$(SHADER_NAMES) $(addsuffix _nosg,$(SHADER_NOSG)) matmul_big \
                attn_flash_cm_d64 attn_flash_cm_d80 router_chain attn_decode_prof \
                $(addprefix matmul_cm_,$(MATMUL_CM_TILES)) $(MATMUL_CM_VARIANTS))
SHADER_H     := $(SHADER_SPV:.spv=.h)

# glslc's dependency files have no phony targets for the included files: an include removed since the last build
# (still named in an old .d file) must not stop make, as -MP does for the C files
shaders/%.glsl: ;

$(SHADER_DIR)/%.spv: shaders/%.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) -MD -MF $@.d $< -o $@

$(SHADER_DIR)/%_nosg.spv: shaders/%.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) -DNO_SUBGROUP -MD -MF $@.d $< -o $@

# the tiled matmul with 128 x 128 tiles (8 x 8 outputs per thread)
$(SHADER_DIR)/matmul_big.spv: shaders/matmul.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) -DMM_T=8 -MD -MF $@.d $< -o $@

# the decode attention with its phase clocks (OMNI_VK_ATTN_PROF=1, vulkan_bench; needs VK_KHR_shader_clock)
$(SHADER_DIR)/attn_decode_prof.spv: shaders/attn_decode.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) -DPROF -MD -MF $@.d $< -o $@

# o_proj + residual chained in front of the decode router (router.comp)
$(SHADER_DIR)/router_chain.spv: shaders/router.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) -DCHAIN -MD -MF $@.d $< -o $@

# matmul_cm_<BM>x<BN>: 8 subgroups, 8 along the weight rows when the x tile is 32 rows, else 4 x 2
$(SHADER_DIR)/matmul_cm_%.spv: shaders/matmul_cm.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) $(call cm_flags,$*) -MD -MF $@.d $< -o $@

# the fp16-activation builds (vk_coopmat.c: OMNI_VK_CM_X16; make prefers the rule with the shortest stem, so this
# one wins over matmul_cm_%.spv above)
cm_flags = -DCM_BM=$(word 1,$(subst x, ,$1)) -DCM_BN=$(word 2,$(subst x, ,$1)) -DCM_WM=$(if $(filter 256x32,$1),8,4)
$(SHADER_DIR)/matmul_cm_%_x16.spv: shaders/matmul_cm.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) $(call cm_flags,$*) -DCM_X16=1 -MD -MF $@.d $< -o $@

# tensor-core prefill attention for smaller heads, padded to 64 or 80 dims (the audio and vision encoders)
$(SHADER_DIR)/attn_flash_cm_d%.spv: shaders/attn_flash_cm.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC) $(GLSLC_FLAGS) -DHD_PAD=$* -MD -MF $@.d $< -o $@

# od prints 32-bit words in host order, which is the order glslc wrote them in
$(SHADER_DIR)/%.h: $(SHADER_DIR)/%.spv
	@{ echo "/* generated from $(notdir $<) by shaders/shaders.mk */"; \
	   echo "static const uint32_t omni_spv_$*[] = {"; \
	   od -An -v -tx4 $< | sed -e 's/ *\([0-9a-f]\{8\}\)/0x\1,/g'; \
	   echo "};"; } > $@.tmp && mv $@.tmp $@

$(BUILD)/engine/vulkan/vk_shaders.o: $(SHADER_H)

$(SHADER_DIR)/.validated: $(SHADER_SPV)
	@for f in $(SHADER_SPV); do $(SPIRV_VAL) --target-env vulkan1.2 $$f || { echo "spirv-val: $$f"; exit 1; }; done
	@touch $@

# Shaders Debian 12's glslc cannot compile (GL_NV_cooperative_matrix2): built with GLSLC2, a current glslc that
# tools/newglslc.sh unpacks into .toolchain/ (`make deps` runs it), validated with its spirv-val for Vulkan 1.3.
# Without it they are skipped and vk_shaders.c embeds nothing for them (the kernels they serve fall back; see
# vk_coopmat.c). GLSLC2= (empty) skips them on purpose.
GLSLC2       ?= $(wildcard .toolchain/bin/glslc)
SPIRV_VAL2   ?= $(or $(wildcard $(dir $(GLSLC2))spirv-val),$(SPIRV_VAL))
ifneq ($(strip $(GLSLC2)),)
SHADER_NEW_SPV := $(patsubst %,$(SHADER_DIR)/%.spv,$(SHADER_NEW))
# The KHR cooperative-matrix twins (cm.glsl with -DCM_KHR) of every tensor-core GEMM and prefill-attention build:
# what devices without the NV extension (AMD on RADV) run; vk_device.c cm_flavour picks them (OMNI_VK_CM_KHR)
CM_KHR_MM    := matmul_cm $(addprefix matmul_cm_,$(MATMUL_CM_TILES)) $(MATMUL_CM_VARIANTS)
CM_KHR_FA    := attn_flash_cm attn_flash_cm_d64 attn_flash_cm_d80
SHADER2_SPV  := $(SHADER_NEW_SPV) $(patsubst %,$(SHADER_DIR)/%_khr.spv,$(CM_KHR_MM) $(CM_KHR_FA))
SHADER2_H    := $(SHADER2_SPV:.spv=.h)
$(SHADER_NEW_SPV): $(SHADER_DIR)/%.spv: shaders/%.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC2) -fshader-stage=compute --target-env=vulkan1.3 -O -Ishaders -Iengine/vulkan -MD -MF $@.d $< -o $@
# the stem's shape (matmul_cm_<BM>x<BN>[_x16]; none: 128 x 64) and fp16-activation suffix, as the rules above
khr_mm_flags = $(if $(word 3,$(subst _, ,$1)),$(call cm_flags,$(word 3,$(subst _, ,$1)))) \
               $(if $(filter x16,$(word 4,$(subst _, ,$1))),-DCM_X16=1)
$(patsubst %,$(SHADER_DIR)/%_khr.spv,$(CM_KHR_MM)): $(SHADER_DIR)/%_khr.spv: shaders/matmul_cm.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC2) $(GLSLC_FLAGS) -DCM_KHR $(call khr_mm_flags,$*) -MD -MF $@.d $< -o $@
$(patsubst %,$(SHADER_DIR)/%_khr.spv,$(CM_KHR_FA)): $(SHADER_DIR)/%_khr.spv: shaders/attn_flash_cm.comp
	@mkdir -p $(SHADER_DIR)
	$(GLSLC2) $(GLSLC_FLAGS) -DCM_KHR $(if $(findstring _d,$*),-DHD_PAD=$(subst attn_flash_cm_d,,$*)) -MD -MF $@.d $< -o $@
$(SHADER_DIR)/.validated2: $(SHADER2_SPV)
	@for f in $(SHADER2_SPV); do $(SPIRV_VAL2) --target-env vulkan1.3 $$f || { echo "spirv-val: $$f"; exit 1; }; done
	@touch $@
$(BUILD)/engine/vulkan/vk_shaders.o: $(SHADER2_H)
$(BUILD)/engine/vulkan/vk_shaders.o: CFLAGS += -DOMNI_HAVE_SHADERS2=1
shaders: $(SHADER2_H) $(SHADER_DIR)/.validated2
TEST_EXTRA_DEPS += $(SHADER_DIR)/.validated2
endif

shaders: $(SHADER_H) $(SHADER_DIR)/.validated
TEST_EXTRA_DEPS += $(SHADER_DIR)/.validated

endif
