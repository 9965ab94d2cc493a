#!/usr/bin/env bash
# One script for a bare GPU machine, run from the repository root: build the CUDA
# extension, run the GPU tests, run each CUDA kernel test once under compute-sanitizer
# (memcheck, racecheck), time the benchmarks, collect everything, print a summary (also
# written as gpu_check_<stamp>.json next to the results: commit it under bench/results
# and `gankernels info` reports the backends as validated on that GPU on that date).
#
#   bash bench/gpu_check.sh                                     # on the GPU machine
#   PYTHON=.venv/bin/python bash bench/gpu_check.sh --dry-run   # CPU rehearsal (CI)
#
# Options:
#   --dry-run   same steps on the CPU with tiny sizes: no CUDA build, `-m cuda` tests only
#               (they skip), the sanitizer's selection of tests collected only,
#               `bench --device cpu --quick --no-compile`
#   --build     with --dry-run: reinstall the package (CPU extension) as step 2
# Environment:
#   PYTHON           interpreter (default python3)
#   OUT              if set, results and a tarball of the logs are copied there (flat)
#   RESULTS          where the benchmark writes (default: a fresh folder under build/)
#   GK_CHECK_BUDGET  seconds for the whole script (default 460; dry run 1800)
#   GK_BENCH_ARGS    extra arguments for `gankernels bench`
#   CUDA_HOME, TORCH_CUDA_ARCH_LIST, MAX_JOBS   passed to the build (defaults below)
#   COMPUTE_SANITIZER  the compute-sanitizer binary (default $CUDA_HOME/bin/compute-sanitizer)
#
# Exit status: 0 when every step passed, 1 otherwise. The summary table comes last.

set -u

PYTHON=${PYTHON:-python3}
DRY=0
BUILD=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --build) BUILD=1 ;;
        -h | --help)
            sed -n '2,26p' "$0"
            exit 0
            ;;
        *)
            echo "gpu_check.sh: unknown argument $arg (try --help)" >&2
            exit 2
            ;;
    esac
done

if [ ! -f pyproject.toml ] || [ ! -d gankernels ]; then
    echo "gpu_check.sh: run me from the repository root" >&2
    exit 2
fi

export PYTHONUNBUFFERED=1
STAMP=$(date +%Y%m%d-%H%M%S)
WORK=build/gpu_check/$STAMP
LOGS=$WORK/logs
RESULTS=${RESULTS:-$WORK/results}
mkdir -p "$LOGS" "$RESULTS"
if [ "$DRY" = 1 ]; then BUDGET=${GK_CHECK_BUDGET:-1800}; else BUDGET=${GK_CHECK_BUDGET:-460}; fi
START=$SECONDS

NAMES=()
STATES=()
TIMES=()
DETAILS=()
record() { # name state seconds detail
    NAMES+=("$1")
    STATES+=("$2")
    TIMES+=("$3")
    DETAILS+=("$4")
}

# Seconds a step may take: what it wants, but leave `reserve` for the steps after it.
limit() { # wanted reserve
    local left=$((BUDGET - (SECONDS - START) - $2))
    if [ "$left" -gt "$1" ]; then left=$1; fi
    if [ "$left" -lt 20 ]; then left=20; fi
    echo "$left"
}

# State of a finished command from its exit status.
state_of() { # rc [empty_ok]
    case "$1" in
        0) echo PASS ;;
        124 | 137) echo TIMEOUT ;;
        5) if [ "${2:-0}" = 1 ]; then echo "PASS"; else echo EMPTY; fi ;; # pytest: no tests
        *) echo FAIL ;;
    esac
}

banner() { printf '\n===== %s =====\n' "$*"; }

# ---------------------------------------------------------------------------------------
banner "1/8 environment ($([ "$DRY" = 1 ] && echo dry run || echo GPU run))"
t0=$SECONDS
{
    date -u +"date %Y-%m-%dT%H:%M:%SZ"
    echo "host $(hostname) | $(nproc) cores | python: $PYTHON"
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv
    else
        echo "nvidia-smi: not found"
    fi
    if command -v nvcc > /dev/null; then nvcc --version | tail -n 2; else echo "nvcc: not found"; fi
    if command -v ninja > /dev/null; then echo "ninja $(ninja --version)"; else echo "ninja: not found"; fi
    "$PYTHON" - << 'EOF'
import platform, torch
try:
    import triton
    tv = triton.__version__
except Exception as err:  # report, do not fail here
    tv = f"not importable ({err})"
print(f"python {platform.python_version()} | torch {torch.__version__} (cuda {torch.version.cuda}) | triton {tv}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"cuda device: {torch.cuda.get_device_name(0)}, sm_{p.major}{p.minor}, "
          f"{p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB")
else:
    print("torch sees no CUDA device")
EOF
} 2>&1 | tee "$LOGS/env.log"
rc=${PIPESTATUS[0]}
if [ "$DRY" = 0 ] && ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "torch sees no CUDA device: the GPU steps will fail"
    rc=1
fi
record environment "$(state_of "$rc")" $((SECONDS - t0)) "$LOGS/env.log"

# ---------------------------------------------------------------------------------------
banner "2/8 build the extension"
t0=$SECONDS
BUILD_STATE=SKIP
if [ "$DRY" = 1 ] && [ "$BUILD" = 0 ]; then
    echo "dry run: install skipped (pass --build to reinstall)"
    record build SKIP 0 "dry run"
else
    lim=$(limit 300 200)
    install() {
        if [ "$DRY" = 1 ]; then
            timeout -k 10 "$lim" "$PYTHON" -m pip install --no-deps --no-build-isolation "$@" -e .
        else
            CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} \
                MAX_JOBS=${MAX_JOBS:-16} timeout -k 10 "$lim" \
                "$PYTHON" -m pip install --no-deps --no-build-isolation "$@" -e .
        fi
    }
    echo "pip install -e . (limit ${lim}s), log: $LOGS/build.log"
    install > "$LOGS/build.log" 2>&1
    rc=$?
    if [ "$rc" != 0 ] && grep -q "externally-managed-environment" "$LOGS/build.log"; then
        echo "system-managed interpreter: retrying with --break-system-packages"
        install --break-system-packages > "$LOGS/build.log" 2>&1
        rc=$?
    fi
    BUILD_STATE=$(state_of "$rc")
    if [ "$rc" = 0 ]; then
        tail -n 3 "$LOGS/build.log"
    else
        echo "build $BUILD_STATE (exit $rc); last lines of $LOGS/build.log:"
        tail -n 40 "$LOGS/build.log"
        # Do not let the package try a JIT build of its own in every later step.
        export GANKERNELS_NO_EXTENSION=1
        echo "continuing with GANKERNELS_NO_EXTENSION=1 (Triton and reference backends only)"
    fi
    record build "$BUILD_STATE" $((SECONDS - t0)) "$LOGS/build.log"
fi

# ---------------------------------------------------------------------------------------
banner "3/8 backends"
t0=$SECONDS
EXPECT=""
if [ "$DRY" = 0 ]; then
    EXPECT="triton"
    if [ "$BUILD_STATE" = PASS ]; then EXPECT="triton,cuda"; fi
fi
(
    rc=0
    "$PYTHON" -c "import gankernels as gk; print(gk.backends())" || rc=1
    GK_EXPECT="$EXPECT" "$PYTHON" - << 'EOF' || rc=1
import os, sys
from gankernels import _backend
status = _backend.availability()
for name, (ok, why) in status.items():
    print(f"  {name:9s} {'yes' if ok else 'no '} {why}")
missing = [b for b in os.environ["GK_EXPECT"].split(",") if b and not status[b][0]]
if missing:
    print(f"expected backend(s) missing: {missing}")
    sys.exit(1)
EOF
    "$PYTHON" -m gankernels info || rc=1
    exit $rc
) 2>&1 | tee "$LOGS/backends.log"
rc=${PIPESTATUS[0]}
record backends "$(state_of "$rc")" $((SECONDS - t0)) "$LOGS/backends.log"

# ---------------------------------------------------------------------------------------
banner "4/8 GPU tests"
t0=$SECONDS
lim=$(limit 150 180)
# tests/conftest.py turns the Triton interpreter on unless TRITON_INTERPRET is already
# set: on the GPU set it to 0 so that Triton kernels run compiled, on CUDA tensors.
if [ "$DRY" = 0 ]; then export TRITON_INTERPRET=0; fi
echo "pytest -m cuda tests/ (limit ${lim}s)"
timeout -k 10 "$lim" "$PYTHON" -m pytest -q -m cuda tests/ -p no:cacheprovider \
    --junitxml="$LOGS/junit_cuda.xml" > "$LOGS/tests_cuda.log" 2>&1
rc=$?
tail -n 15 "$LOGS/tests_cuda.log"
TESTS_CUDA=$(state_of "$rc" "$DRY")
record tests-cuda "$TESTS_CUDA" $((SECONDS - t0)) "$LOGS/tests_cuda.log"

t0=$SECONDS
TESTS_OPS=SKIP
if [ "$DRY" = 1 ]; then
    echo "dry run: op tests on the GPU skipped (CI runs them on the CPU, Triton interpreted)"
    record tests-ops SKIP 0 "dry run"
else
    # The op tests run every available backend; on the GPU that is triton and cuda on
    # CUDA tensors, next to the CPU ones.
    OP_TESTS=(tests/test_triton_*_kernels.py)
    for op in spectral_norm penalty bias_act norm_act upfirdn2d modulated_conv \
        minibatch_stddev; do
        if [ -f "tests/test_$op.py" ]; then OP_TESTS+=("tests/test_$op.py"); fi
    done
    lim=$(limit 150 170)
    echo "pytest ${OP_TESTS[*]} on the GPU, no interpreter (limit ${lim}s)"
    timeout -k 10 "$lim" env TRITON_INTERPRET=0 "$PYTHON" -m pytest -q \
        "${OP_TESTS[@]}" -p no:cacheprovider \
        --junitxml="$LOGS/junit_ops.xml" > "$LOGS/tests_ops.log" 2>&1
    rc=$?
    tail -n 15 "$LOGS/tests_ops.log"
    TESTS_OPS=$(state_of "$rc")
    record tests-ops "$TESTS_OPS" $((SECONDS - t0)) "$LOGS/tests_ops.log"
fi

# ---------------------------------------------------------------------------------------
banner "5/8 compute-sanitizer"
# One small run of each CUDA kernel test (the first case of each test function, see
# GANKERNELS_TEST_ONE_CASE in tests/conftest.py) under memcheck (out-of-bounds and
# misaligned accesses; PyTorch's caching allocator off, so that each tensor is an
# allocation of its own and a read past its end is seen) and under racecheck
# (shared-memory hazards). Any finding fails the step, hence the run.
SANITIZER=${COMPUTE_SANITIZER:-${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer}
if [ ! -x "$SANITIZER" ] && command -v compute-sanitizer > /dev/null; then
    SANITIZER=$(command -v compute-sanitizer)
fi
SAN_PYTEST=(-m pytest -q -m "cuda and not slow" -p no:cacheprovider tests/test_cuda_*_kernels.py)
SANITIZED=PASS
for tool in memcheck racecheck; do
    t0=$SECONDS
    log=$LOGS/sanitizer_$tool.log
    if [ "$DRY" = 1 ]; then
        # No GPU: collect the same selection, so that it is known to hold every test file.
        echo "dry run: compute-sanitizer --tool $tool skipped; the tests it would run:"
        GANKERNELS_TEST_ONE_CASE=1 timeout -k 10 120 "$PYTHON" "${SAN_PYTEST[@]}" \
            --collect-only > "$log" 2>&1
        rc=$?
        tail -n 1 "$log"
        if [ "$rc" = 0 ]; then state=SKIP; else state=FAIL; fi
        record "san-$tool" "$state" $((SECONDS - t0)) "dry run: selection collected, $log"
        continue
    fi
    if [ ! -x "$SANITIZER" ]; then
        echo "compute-sanitizer not found ($SANITIZER): set COMPUTE_SANITIZER or CUDA_HOME"
        record "san-$tool" MISSING 0 "$SANITIZER not found"
        SANITIZED=MISSING
        continue
    fi
    lim=$(limit 120 150)
    extra_env=()
    if [ "$tool" = memcheck ]; then extra_env=(PYTORCH_NO_CUDA_MEMORY_CACHING=1); fi
    echo "$SANITIZER --tool $tool pytest (one case per test) (limit ${lim}s), log: $log"
    env GANKERNELS_TEST_ONE_CASE=1 TRITON_INTERPRET=0 ${extra_env[@]+"${extra_env[@]}"} \
        timeout -k 10 "$lim" "$SANITIZER" --tool "$tool" --error-exitcode 86 \
        "$PYTHON" "${SAN_PYTEST[@]}" > "$log" 2>&1
    rc=$?
    grep -E "ERROR SUMMARY|passed|failed|error" "$log" | tail -n 5
    case "$rc" in
        86) state=FAIL ;; # a sanitizer finding
        *) state=$(state_of "$rc") ;;
    esac
    if [ "$state" != PASS ]; then SANITIZED=$state; fi
    record "san-$tool" "$state" $((SECONDS - t0)) "$log"
done

# ---------------------------------------------------------------------------------------
banner "6/8 benchmark"
t0=$SECONDS
lim=$(limit 600 25)
if [ "$DRY" = 1 ]; then
    BENCH=(--device cpu --quick --no-compile)
    NOTE="dry run of bench/gpu_check.sh"
else
    # Past this many seconds the harness drops the remaining torch.compile providers, so
    # that the eager rows still finish inside the limit.
    BENCH=(--device cuda --budget $((lim > 150 ? lim - 90 : lim / 2)))
    NOTE="bench/gpu_check.sh: build $BUILD_STATE, cuda tests $TESTS_CUDA, op tests $TESTS_OPS,"
    NOTE="$NOTE compute-sanitizer $SANITIZED"
fi
if [ "$DRY" = 0 ] && [ "$TESTS_CUDA" = PASS ] && [ "$TESTS_OPS" = PASS ] && [ "$SANITIZED" = PASS ]; then
    BENCH+=(--tests-passed)
fi
# shellcheck disable=SC2206
EXTRA=(${GK_BENCH_ARGS:-})
echo "gankernels bench ${BENCH[*]} ${EXTRA[*]} --out $RESULTS (limit ${lim}s)"
timeout -k 10 "$lim" "$PYTHON" -m gankernels bench "${BENCH[@]}" --out "$RESULTS" \
    --note "$NOTE" ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 | tee "$LOGS/bench.log"
rc=${PIPESTATUS[0]}
record bench "$(state_of "$rc")" $((SECONDS - t0)) "$LOGS/bench.log"

t0=$SECONDS
lim=$(limit 240 20)
# The GPU machine has no MNIST package: scikit-learn's digits, scaled to 28x28, there.
if [ "$DRY" = 1 ]; then TRAIN=(--device cpu --quick --no-compile); else TRAIN=(--device cuda --data digits); fi
echo "gankernels bench --train ${TRAIN[*]} --out $RESULTS (limit ${lim}s)"
timeout -k 10 "$lim" "$PYTHON" -m gankernels bench --train "${TRAIN[@]}" --out "$RESULTS" \
    --note "$NOTE" 2>&1 | tee "$LOGS/bench_train.log"
rc=${PIPESTATUS[0]}
record bench-train "$(state_of "$rc")" $((SECONDS - t0)) "$LOGS/bench_train.log"

t0=$SECONDS
lim=$(limit 120 15)
if [ "$DRY" = 1 ]; then METRICS=(--device cpu --quick); else METRICS=(--device cuda); fi
echo "gankernels bench --metrics ${METRICS[*]} --out $RESULTS (limit ${lim}s)"
timeout -k 10 "$lim" "$PYTHON" -m gankernels bench --metrics "${METRICS[@]}" --out "$RESULTS" \
    2>&1 | tee "$LOGS/bench_metrics.log"
rc=${PIPESTATUS[0]}
record bench-metrics "$(state_of "$rc")" $((SECONDS - t0)) "$LOGS/bench_metrics.log"

# ---------------------------------------------------------------------------------------
banner "7/8 collect"
t0=$SECONDS
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    mapfile -t FILES < <(find "$RESULTS" -maxdepth 1 -type f | sort)
    if [ "${#FILES[@]}" -le 6 ]; then
        for f in "${FILES[@]}"; do cp "$f" "$OUT/"; done
    else # keep what comes back under the file-count limit
        tar czf "$OUT/results.tar.gz" -C "$RESULTS" .
    fi
    tar czf "$OUT/gpu_check_logs.tar.gz" -C "$WORK" logs
    rc=$?
    echo "copied to $OUT: $(ls "$OUT" | tr '\n' ' ')"
    record collect "$(state_of "$rc")" $((SECONDS - t0)) "$OUT"
else
    echo "OUT not set: results in $RESULTS, logs in $LOGS"
    record collect SKIP 0 "OUT not set; see $WORK"
fi

# ---------------------------------------------------------------------------------------
FAILED=0
summary() {
    printf '%-13s %-8s %6s  %s\n' step status seconds detail
    local i
    for i in "${!NAMES[@]}"; do
        printf '%-13s %-8s %6s  %s\n' "${NAMES[$i]}" "${STATES[$i]}" "${TIMES[$i]}" "${DETAILS[$i]}"
    done
    printf '%-13s %-8s %6s  %s\n' total "$([ "$FAILED" = 0 ] && echo PASS || echo FAIL)" \
        $((SECONDS - START)) "$([ "$DRY" = 1 ] && echo "dry run" || echo "GPU run") of bench/gpu_check.sh"
}
for s in "${STATES[@]}"; do
    case "$s" in PASS | SKIP) ;; *) FAILED=1 ;; esac
done
if [ -n "${OUT:-}" ]; then summary > "$OUT/summary.txt"; fi
# The same table for programs (gankernels info reads bench/results/gpu_check_*.json once
# committed). A dry run writes one too, marked as such.
SUMMARY_JSON=$RESULTS/gpu_check_$STAMP.json
STEPS=()
for i in "${!NAMES[@]}"; do
    STEPS+=("${NAMES[$i]}" "${STATES[$i]}" "${TIMES[$i]}" "${DETAILS[$i]}")
done
"$PYTHON" - "$SUMMARY_JSON" "$DRY" "$FAILED" "${STEPS[@]}" << 'EOF' || echo "could not write $SUMMARY_JSON"
import datetime, json, sys
path, dry, failed, rest = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1", sys.argv[4:]
try:
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
except Exception as err:  # the summary must be written whatever else failed
    device = f"unknown ({err})"
steps = {
    rest[i]: {"status": rest[i + 1], "seconds": int(rest[i + 2]), "detail": rest[i + 3]}
    for i in range(0, len(rest), 4)
}
summary = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "dry_run": dry,
    "device": device,
    "status": "FAIL" if failed else "PASS",
    "steps": steps,
}
with open(path, "w") as f:
    json.dump(summary, f, indent=1)
print(f"summary: {path}")
EOF
if [ -n "${OUT:-}" ] && [ -f "$SUMMARY_JSON" ]; then cp "$SUMMARY_JSON" "$OUT/"; fi
banner "8/8 summary"
summary
exit "$FAILED"
