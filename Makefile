# omni — build, test and install.   make deps | make | make test | make test-asan | make bench | make fuzz
# Sources are found by wildcard: a new .c file in a module folder is built without touching this file.

CC       ?= cc
BUILD    ?= build
PREFIX   ?= /usr/local
OPT      ?= -O2
SAN      ?=
CFLAGS   += -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -MMD -MP -pthread $(SAN) -Iengine
LDFLAGS  += -pthread $(SAN)

PKG_ENGINE := libcjson
PKG_AUDIO  := portaudio-2.0 samplerate alsa
PKG_VISION := SDL2_image
PKG_UI     := ncursesw
HAVE_VULKAN := $(shell pkg-config --exists vulkan && command -v glslc >/dev/null && echo 1)
ifeq ($(HAVE_VULKAN),1)
PKG_ENGINE += vulkan
CFLAGS     += -DOMNI_HAVE_VULKAN=1
endif

# HEADLESS=1: the engine commands only (no audio/vision/ui libraries), for GPU servers and benchmark boxes that
# lack the desktop libraries; media commands then say they are unavailable.
ifeq ($(HEADLESS),1)
PKG_AUDIO  :=
PKG_VISION :=
PKG_UI     :=
CFLAGS     += -DOMNI_HEADLESS=1
endif

pc_cflags = $(shell pkg-config --cflags $(1) 2>/dev/null)
pc_libs   = $(shell pkg-config --libs $(1) 2>/dev/null)

ENGINE_SRC := $(wildcard engine/*.c) $(if $(HAVE_VULKAN),$(wildcard engine/vulkan/*.c))
AUDIO_SRC  := $(if $(filter 1,$(HEADLESS)),,$(wildcard audio/*.c))
VISION_SRC := $(if $(filter 1,$(HEADLESS)),,$(wildcard vision/*.c))
UI_SRC     := $(if $(filter 1,$(HEADLESS)),,$(wildcard ui/*.c))
APP_SRC    := $(wildcard app/*.c)
TEST_SRC   := $(if $(filter 1,$(HEADLESS)),$(filter-out tests/test_audio_capture.c tests/test_audio_mel.c \
  tests/test_audio_resample.c tests/test_audio_ring.c tests/test_audio_vad.c tests/test_audio_wav.c \
  tests/test_vision_image.c tests/test_vision_preprocess.c,$(wildcard tests/*.c)),$(wildcard tests/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

LIB_ENGINE := $(BUILD)/libomni.a
LIB_AUDIO  := $(BUILD)/libomni_audio.a
LIB_VISION := $(BUILD)/libomni_vision.a
LIB_UI     := $(BUILD)/libomni_ui.a
LIBS_ALL   := $(call pc_libs,$(PKG_ENGINE) $(PKG_AUDIO) $(PKG_VISION) $(PKG_UI)) -lm

.PHONY: all deps test test-asan bench fuzz install clean shaders
all: $(BUILD)/omni

-include shaders/shaders.mk

$(BUILD)/engine/%.o: CFLAGS += $(call pc_cflags,$(PKG_ENGINE)) -I$(BUILD)/shaders
$(BUILD)/audio/%.o:  CFLAGS += $(call pc_cflags,$(PKG_AUDIO)) -Iaudio
$(BUILD)/vision/%.o: CFLAGS += $(call pc_cflags,$(PKG_VISION)) -Ivision
$(BUILD)/ui/%.o:     CFLAGS += $(call pc_cflags,$(PKG_UI)) -Iui
$(BUILD)/app/%.o:    CFLAGS += $(call pc_cflags,$(PKG_ENGINE) $(PKG_AUDIO) $(PKG_VISION) $(PKG_UI)) -Iaudio -Ivision -Iui -Iapp
$(BUILD)/tests/%.o:  CFLAGS += $(call pc_cflags,$(PKG_ENGINE) $(PKG_AUDIO) $(PKG_VISION) $(PKG_UI)) -Iaudio -Ivision -Iui -Iapp -Itests

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB_ENGINE): $(call obj,$(ENGINE_SRC)) $(BUILD)/empty.o
$(LIB_AUDIO):  $(call obj,$(AUDIO_SRC)) $(BUILD)/empty.o
$(LIB_VISION): $(call obj,$(VISION_SRC)) $(BUILD)/empty.o
$(LIB_UI):     $(call obj,$(UI_SRC)) $(BUILD)/empty.o
$(BUILD)/%.a:
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

# app/ objects other than main.c are shared with the test binary (command implementations are testable)
APP_LIB_SRC := $(filter-out app/main.c,$(APP_SRC))

$(BUILD)/omni: $(call obj,$(APP_SRC)) $(LIB_UI) $(LIB_VISION) $(LIB_AUDIO) $(LIB_ENGINE)
	$(CC) $(LDFLAGS) -o $@ $(call obj,$(APP_SRC)) $(LIB_UI) $(LIB_VISION) $(LIB_AUDIO) $(LIB_ENGINE) $(LIBS_ALL)

$(BUILD)/omni_tests: $(call obj,$(TEST_SRC) $(APP_LIB_SRC)) $(LIB_UI) $(LIB_VISION) $(LIB_AUDIO) $(LIB_ENGINE)
	$(CC) $(LDFLAGS) -o $@ $(call obj,$(TEST_SRC) $(APP_LIB_SRC)) $(LIB_UI) $(LIB_VISION) $(LIB_AUDIO) $(LIB_ENGINE) $(LIBS_ALL)

# the stand-alone Vulkan benchmark (tests/bench/vulkan_bench.c: kernels, grid barriers, a synthetic model); not
# part of the test suite, built on request (GPU runs: make BUILD=build-gpu HEADLESS=1 build-gpu/vulkan_bench)
$(BUILD)/vulkan_bench: tests/bench/vulkan_bench.c $(LIB_ENGINE)
	$(CC) $(CFLAGS) $(call pc_cflags,$(PKG_ENGINE)) -o $@ $< $(LIB_ENGINE) $(LIBS_ALL)

$(BUILD)/empty.o:
	@mkdir -p $(BUILD)
	echo 'int omni_empty_lib_;' | $(CC) -x c -c - -o $@

# Test fixtures are committed as tests/fixtures/<name>.tar.xz (tiny checkpoints + reference outputs, mostly zeros,
# so they compress well) and unpacked into $(BUILD)/fixtures/<name>/ before the tests run.
FIXTURE_TARS := $(wildcard tests/fixtures/*.tar.xz)
FIXTURE_STAMPS := $(patsubst tests/fixtures/%.tar.xz,$(BUILD)/fixtures/%/.unpacked,$(FIXTURE_TARS))
$(BUILD)/fixtures/%/.unpacked: tests/fixtures/%.tar.xz
	@rm -rf $(BUILD)/fixtures/$* && mkdir -p $(BUILD)/fixtures/$*
	@tar -xJf $< -C $(BUILD)/fixtures/$*
	@touch $@
$(BUILD)/tests/%.o: CFLAGS += -DFIXTURES_DIR='"$(BUILD)/fixtures"'

# Tokenizer test data: tests/data/tokenizer/<name>.json.xz (Qwen3 and Qwen3-Omni tokenizer.json) unpacked into
# $(BUILD)/testdata/<name>.json; tests find that folder through TESTDATA_BUILD.
TOK_TESTDATA := $(BUILD)/testdata/qwen3-tokenizer.json $(BUILD)/testdata/qwen3-omni-tokenizer.json
$(BUILD)/testdata/%.json: tests/data/tokenizer/%.json.xz
	@mkdir -p $(dir $@)
	@xz -dc $< > $@.tmp && mv $@.tmp $@
TEST_EXTRA_DEPS += $(TOK_TESTDATA)
$(BUILD)/tests/%.o: CFLAGS += -DTESTDATA_BUILD='"$(BUILD)/testdata"'

# Every test; the last line printed is `N passed, N failed`. The binary is built first so `omni` itself is tested.
test: $(BUILD)/omni $(BUILD)/omni_tests $(FIXTURE_STAMPS) $(TEST_EXTRA_DEPS)
	@OMNI_BIN=$(BUILD)/omni $(BUILD)/omni_tests $(T)

test-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

bench: $(BUILD)/omni
	$(BUILD)/omni bench --config assets/qwen3-0.6b.config.json -p 128 -n 32

# libFuzzer targets (clang): build/fuzz/<name>; run e.g. build/fuzz/fuzz_safetensors -max_total_time=60
FUZZ_SRC := $(wildcard tests/fuzz/*.c)
fuzz:
	@mkdir -p $(BUILD)/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$n"; \
	  clang -std=c11 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -Iengine -Iaudio -Ivision $$(pkg-config --cflags $(PKG_ENGINE) $(PKG_VISION)) \
	    $$f $(filter-out engine/vulkan/%,$(ENGINE_SRC)) $(AUDIO_SRC) $(VISION_SRC) -o $(BUILD)/fuzz/$$n \
	    $$(pkg-config --libs libcjson $(PKG_AUDIO) $(PKG_VISION)) -lm -pthread -UOMNI_HAVE_VULKAN || exit 1; done

# Installs every Debian package needed to build and test (non-interactive).
DEBS := build-essential pkg-config clang libncurses-dev portaudio19-dev libasound2-dev libsamplerate0-dev \
  libvulkan-dev glslc glslang-tools spirv-tools mesa-vulkan-drivers vulkan-tools vulkan-validationlayers \
  libsdl2-image-dev libcjson-dev espeak-ng sox tmux xxd xz-utils unicode-data pulseaudio pulseaudio-utils libasound2-plugins
# then a current shader compiler for the shaders Debian 12's cannot build (tools/newglslc.sh: Debian sid's glslc
# unpacked into .toolchain/, nothing installed); without network it is skipped and those kernels are left out.
deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(DEBS)
	tools/newglslc.sh .toolchain || echo "tools/newglslc.sh failed: building without the GLSLC2 shaders"

install: $(BUILD)/omni
	install -D -m 755 $(BUILD)/omni $(DESTDIR)$(PREFIX)/bin/omni

clean:
	rm -rf build build-asan
# (.toolchain/, the GLSLC2 compiler, stays: `rm -rf .toolchain` to drop it)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
