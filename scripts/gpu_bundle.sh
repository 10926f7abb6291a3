#!/usr/bin/env bash
# Prepare .gpu/ (ignored by git) for a GPU run of the benchmarks on a machine that has
# PyTorch with CUDA but no network and none of the reference packages.
#
# Run here, in the repository root, with the test environment active (the README's test
# command installs it):
#
#     bash scripts/gpu_bundle.sh
#
# It copies the official reference packages (segment_anything, mobile_sam, sam2 and sam2's
# pure-Python imports) from this environment into .gpu/site, and downloads the CPython
# 3.12 manylinux wheels of the compiled packages samkit needs that such an image may lack
# (pycocotools) into .gpu/whl. Then, on the GPU machine, carrying
# .gpu (about 3.5 MiB):
#
#     bash benchmarks/gpu_check.sh        # writes its results under $OUT
set -euo pipefail
cd "$(dirname "$0")/.."

if ! grep -qxF '/.gpu/' .git/info/exclude 2>/dev/null; then
    echo '/.gpu/' >>.git/info/exclude
fi
rm -rf .gpu
mkdir -p .gpu/site .gpu/whl

site=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for pkg in segment_anything mobile_sam sam2 hydra omegaconf antlr4 iopath; do
    if [ ! -d "$site/$pkg" ]; then
        echo "gpu_bundle: $pkg is not installed here; run the README's test install first" >&2
        exit 1
    fi
    cp -r "$site/$pkg" .gpu/site/
done
find .gpu/site -name '__pycache__' -type d -prune -exec rm -rf {} +

python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_28_x86_64 -d .gpu/whl "pycocotools==2.0.11"
du -sh .gpu
