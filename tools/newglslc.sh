#!/bin/sh
# newglslc.sh — a current shader compiler (Debian sid's glslc + spirv-val) in a private folder, without touching the
# system: used only for the shaders that Debian 12's glslc (shaderc 2023.2 / glslang 12) cannot compile, today
# shaders/matmul_cm2.comp (GL_NV_cooperative_matrix2, the H100's workgroup-scope tensor-core GEMM).
#
#   tools/newglslc.sh [DIR]      (default .toolchain; `make deps` runs it; needs network to deb.debian.org)
#
# sid's binaries need a newer glibc than Debian 12's, so they are not installed: the .debs are fetched with a
# private apt state (sid sources, no system lists or status touched), unpacked with dpkg -x, and run through the
# folder's own dynamic loader (docs: toolchain notes). Writes DIR/bin/glslc and DIR/bin/spirv-val wrappers; the
# Makefile uses DIR/bin/glslc as GLSLC2 when it exists and skips the new shaders otherwise.
set -eu
DIR=${1:-.toolchain}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
APT="$DIR/apt"
ROOT="$DIR/root"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs" "$DIR/bin"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
    > "$APT/sources.list"
set -- -o Dir::Etc::sourcelist="$APT/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
    -o Dir::State::lists="$APT/lists" -o Dir::Cache="$APT/cache" -o Dir::State::status=/dev/null \
    -o APT::Architecture=amd64 -o APT::Architectures=amd64 -o Debug::NoLocking=1
apt-get "$@" -q update >/dev/null
# the compiler, its library, a matching validator, and the C/C++ runtime they were linked against
(cd "$APT/debs" && rm -f ./*.deb && apt-get "$@" -q download glslc libshaderc1 spirv-tools libc6 libstdc++6 libgcc-s1 >/dev/null)
rm -rf "$ROOT"
for d in "$APT/debs"/*.deb; do dpkg -x "$d" "$ROOT"; done
LIB="$ROOT/usr/lib/x86_64-linux-gnu"
for t in glslc spirv-val; do
    cat > "$DIR/bin/$t" <<W
#!/bin/sh
exec "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$ROOT/usr/bin/$t" "\$@"
W
    chmod +x "$DIR/bin/$t"
done
"$DIR/bin/glslc" --version | head -1
# the compiler must build and validate the shaders it is fetched for (sid moves): otherwise it is removed again, and
# the build leaves those shaders out instead of failing
HERE=$(cd "$(dirname "$0")/.." && pwd)
for f in "$HERE"/shaders/matmul_cm2*.comp; do
    [ -f "$f" ] || continue
    if ! "$DIR/bin/glslc" -fshader-stage=compute --target-env=vulkan1.3 -O -I"$HERE/shaders" -I"$HERE/engine/vulkan" \
            "$f" -o "$DIR/selftest.spv" || ! "$DIR/bin/spirv-val" --target-env vulkan1.3 "$DIR/selftest.spv"; then
        echo "newglslc.sh: $(basename "$f") does not build with this compiler; removing $DIR/bin" >&2
        rm -rf "$DIR/bin"
        exit 1
    fi
done
rm -f "$DIR/selftest.spv"
