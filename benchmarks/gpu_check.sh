#!/usr/bin/env bash
# One prepared GPU measurement: image encoder latency and images/s (fp32, bf16) for the
# models the issues name, prompt-to-mask latency, and video frames/s, each against the
# official implementation on the same random weights, all on the GPU. About 6-8 minutes on
# an H100, plus up to 8 for the two compiled steps at the end (each step has its own time
# limit, so one slow step cannot eat the others).
#
# Prepare here with `bash scripts/gpu_bundle.sh`, then run on the GPU machine from the
# repository root, carrying .gpu:
#
#     bash benchmarks/gpu_check.sh
#
# Results: one text file per step under $OUT (default ./gpu-results), plus env.txt.
set -uo pipefail
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

if [ -d .gpu/whl ] && ls .gpu/whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/samkit-site .gpu/whl/*.whl || exit 1
fi
export PYTHONPATH="$PWD/src:$PWD/.gpu/site:/tmp/samkit-site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c 'import torch, samkit; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0)); print("samkit", samkit.__version__)'
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step() { # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
    echo "exit $?" >>"$OUT/$name.txt"
    tail -12 "$OUT/$name.txt"
}

for model in sam2.1-hiera-tiny sam2.1-hiera-base-plus sam-vit-b; do
    step "image-$model" 150 $PY benchmarks/bench_image.py --model "$model" --device cuda \
        --repeats 10 --prompt-repeats 50 --throughput 8
done
step video-1-object 120 $PY benchmarks/bench_video.py --device cuda --frames 60 --objects 1
step video-3-objects 120 $PY benchmarks/bench_video.py --device cuda --frames 60 --objects 3
# compiled (samkit.compile_model; the published 91 FPS of tiny on an A100 is compiled):
# compilation happens in an untimed warm-up pass over the clip
step video-1-object-compiled 240 $PY benchmarks/bench_video.py --device cuda --frames 60 \
    --objects 1 --compile
step image-sam2.1-hiera-tiny-compiled 240 $PY benchmarks/bench_image.py \
    --model sam2.1-hiera-tiny --device cuda --repeats 10 --prompt-repeats 5 --throughput 8 \
    --compile
