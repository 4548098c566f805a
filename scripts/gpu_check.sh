#!/usr/bin/env bash
# The GPU measurement of `sweep`: CUDA correctness and the benchmark against transformers, in
# two halves, for a GPU machine that has torch but no network and no Rust.
#
#   scripts/gpu_check.sh build   Here, where PyPI is reachable: builds the `tch` binary and the
#                                CUDA test binaries against the GPU machine's torch
#                                (TORCH_VERSION, default 2.11.0) into target/gpu/, stripped and
#                                gzipped (about 20 MB, so that they travel beside the checkout).
#   scripts/gpu_check.sh run     There, from a checkout with target/gpu/ copied in: the parity
#                                fixtures and the batch-invariance and operation-count tests on
#                                CUDA, then `sweep bench` in f32 and bf16 with step profiles,
#                                beside transformers. Everything goes to $OUT (default
#                                target/gpu-out/). About 6 minutes on an H200; each part has
#                                its own time limit, and a part that fails does not stop the rest.
#                                GPU_CHECK_DEVICE=cpu runs the same here, briefly, as a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."

torch_version=${TORCH_VERSION:-2.11.0}
device=${GPU_CHECK_DEVICE:-cuda}

build() {
    local venv=target/torch-$torch_version
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -c "import torch" 2>/dev/null ||
        "$venv/bin/pip" install --quiet "torch==$torch_version"
    export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
    export PATH="$PWD/$venv/bin:$PATH"
    # A target directory of its own: binaries for another libtorch must not replace these.
    export CARGO_TARGET_DIR=target/gpu-build
    local tests
    tests=$(cargo test --release --features tch --test parity --test device --no-run \
        --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
    cargo build --release --features tch
    rm -rf target/gpu && mkdir -p target/gpu
    cp target/gpu-build/release/sweep target/gpu/sweep
    while read -r name path; do cp "$path" "target/gpu/test-$name"; done <<<"$tests"
    strip target/gpu/*
    gzip -9 target/gpu/*
    du -ch target/gpu/* | tail -1
}

run() {
    local out=${OUT:-target/gpu-out}
    mkdir -p "$out"
    local bin=target/gpu-bin
    mkdir -p "$bin"
    for f in target/gpu/*.gz; do
        gunzip -c "$f" >"$bin/$(basename "$f" .gz)"
        chmod +x "$bin/$(basename "$f" .gz)"
    done
    local torch_lib
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export SWEEP_TEST_BACKEND=tch SWEEP_TEST_DEVICE=$device SWEEP_TEST_FIXTURES=$PWD/tests/fixtures
    {
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
        python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)' || true
    } >"$out/machine.txt" 2>&1
    for t in parity device; do
        timeout 120 "$bin/test-$t" --test-threads 1 --nocapture >"$out/test-$t.txt" 2>&1 ||
            echo "test-$t: exit $?" >>"$out/failures.txt"
    done
    local bench=("$bin/sweep" bench --random gpt2 --backend tch --device "$device" --profile)
    if [ "$device" = cuda ]; then
        bench+=(--vs-transformers --python python3)
    else
        bench+=(--cases greedy,sample --new-tokens 8)
    fi
    timeout 200 "${bench[@]}" --batch 1,64,512 >"$out/bench-f32.txt" 2>&1 ||
        echo "bench f32: exit $?" >>"$out/failures.txt"
    timeout 150 "${bench[@]}" --batch 64,512 --dtype bf16 >"$out/bench-bf16.txt" 2>&1 ||
        echo "bench bf16: exit $?" >>"$out/failures.txt"
    tail -n 40 "$out"/*.txt
}

case "${1:-}" in
build) build ;;
run) run ;;
*)
    echo "usage: scripts/gpu_check.sh build|run" >&2
    exit 2
    ;;
esac
