#!/usr/bin/env bash
# The GPU checks on a lent GPU machine, in one call of the device tool:
#
#   run(command="bash bench/device/run.sh", carry=[".device-kit"], timeout_s=600)
#
# after `.venv/bin/python bench/device/build_kit.py` here (the kit: wheels for the machine's Python and Debian's
# bubblewrap).  On the machine it installs the kit into the image's Python (the machine is thrown away after), puts
# bubblewrap on PATH, and runs, each cut off at its own limit so that one stuck stage cannot eat the others' time:
#
#   track  bench/gpu_track.py: the GPU track's notebooks at their GPU size on the GPU, and dl-vision 01 at that size
#          on the CPU (issue 16)
#   check  bench/gpu_check.py: the inventory, a granted sandboxed kernel, a class at once within its seats, dl-vision
#          graded in the sandbox on the GPU and on the CPU (issue 17)
#   smoke  bench/curriculum.py --course python-basics: the kit's sandboxed grading on the CPU (not run by default;
#          for trying the kit on a machine without a GPU)
#
# Arguments name the stages to run (default: track check).  Everything is written under $OUT as it comes (the device
# tool brings $OUT back even when the call is cut off): run.log, install.txt, and each stage's standard output
# (<stage>.txt: its last line is its JSON) and error (<stage>.err: the kernels' warnings among them).
# DEVICE_PYTHON names the Python to install into (default: python3, the image's, which holds PyTorch).
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
KIT=$ROOT/.device-kit
OUT=${OUT:-/tmp/device-out}
PY=${DEVICE_PYTHON:-$(command -v python3)}
STAGES=${*:-track check}
mkdir -p "$OUT"
log() { echo "[$(date -u +%T)] $*" | tee -a "$OUT/run.log"; }

[ -f "$KIT/kit.json" ] || { log "no kit at $KIT: build it first (bench/device/build_kit.py) and carry .device-kit"; exit 2; }
want=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["python"])' "$KIT/kit.json")
have=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
log "python $PY ($have, prefix $("$PY" -c 'import sys; print(sys.base_prefix)')); kit for $want"
full=$("$PY" -c 'import platform; print(platform.python_version())')
[ "$want" = "$have" ] || { log "the kit's wheels are for Python $want, this machine's is $have: build_kit.py --python $full"; exit 2; }
(nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version,mig.mode.current --format=csv) \
    >> "$OUT/run.log" 2>&1 || log "nvidia-smi failed (no driver?)"

started=$(date +%s)
prefix=$("$PY" -c 'import sys; print(sys.prefix)')
if ! touch "$prefix/.academy-kit" 2>/dev/null; then  # a read-only image: install into an overlay on it
    mkdir -p /tmp/academy-overlay/upper /tmp/academy-overlay/work
    mount -t overlay academy-kit -o "lowerdir=$prefix,upperdir=/tmp/academy-overlay/upper,workdir=/tmp/academy-overlay/work" \
        "$prefix" 2>> "$OUT/run.log" || { log "$prefix is read-only and no overlay could be mounted on it"; exit 2; }
    log "$prefix is read-only: the kit goes into an overlay on it"
fi
rm -f "$prefix/.academy-kit"
"$PY" -m pip install --quiet --no-index --no-deps --disable-pip-version-check "$KIT"/wheels/*.whl \
    > "$OUT/install.txt" 2>&1 || { log "installing the kit failed: see install.txt"; tail -5 "$OUT/install.txt"; exit 2; }
log "kit installed in $(( $(date +%s) - started )) s"

# bubblewrap: the kit's, with its libraries where the machine lacks them; kernels run as another user, so the
# interpreter the sandbox mounts must be readable by all (it mounts /usr and the lab's virtual environment).
BIN=$(mktemp -d /tmp/academy-bin.XXXX)
chmod 755 "$KIT/bwrap/bin/bwrap"
if ldd "$KIT/bwrap/bin/bwrap" | grep -q "not found"; then
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$KIT/bwrap/lib" "$KIT/bwrap/bin/bwrap" > "$BIN/bwrap"
    chmod 755 "$BIN/bwrap"
    log "bwrap: the kit's, with the kit's libraries"
else
    ln -s "$KIT/bwrap/bin/bwrap" "$BIN/bwrap"
    log "bwrap: the kit's"
fi
chmod -R a+rX "$KIT/bwrap"
export PATH="$BIN:$PATH" ACADEMY_LAB_PYTHON=$PY PYTHONPATH=$ROOT MPLBACKEND=Agg PYTHONUNBUFFERED=1
sandbox() {  # the grading sandbox as the checks will find it; status 1 when its kernel's Python does not start
    "$PY" - <<'EOF' 2>&1 | tee -a "$OUT/run.log"
import sys
from academy.engine.sandbox import SandboxPolicy
from academy.engine.sandbox.isolation import probe_isolation
report = probe_isolation(SandboxPolicy())
print("sandbox:", {name: getattr(report, name) for name in ("sandbox_available", "mode", "bwrap_version",
      "python_ok", "memory_cgroup", "seccomp", "notes")})
sys.exit(0 if report.python_ok else 1)
EOF
}
if ! sandbox; then  # kernels run as another user: the interpreter and its environment must be readable by all
    log "the sandbox's kernel cannot start the lab's Python: making its environment readable by all"
    chmod -R a+rX "$("$PY" -c 'import sys; print(sys.prefix)')" "$("$PY" -c 'import sys; print(sys.base_prefix)')"
    sandbox || log "still not: the checks will say the sandbox is not available"
fi

stage() {  # stage NAME LIMIT COMMAND...
    local name=$1 limit=$2
    shift 2
    log "$name: $* (cut off after $limit s)"
    local t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.txt" 2> "$OUT/$name.err"
    local rc=$?
    log "$name: exit $rc after $(( $(date +%s) - t0 )) s"
    tail -40 "$OUT/$name.txt"
    grep -v "IPKernelApp\] WARNING" "$OUT/$name.err" | tail -8
}
for name in $STAGES; do
    case $name in
        track) stage track 230 "$PY" bench/gpu_track.py --json --cpu-limit 60 ;;
        check) stage check 330 "$PY" bench/gpu_check.py --json ${GPU_CHECK_ARGS:-} ;;
        smoke) stage smoke 300 "$PY" bench/curriculum.py --course python-basics --json ;;
        *) log "unknown stage $name (track, check, smoke)" ;;
    esac
done
log "done in $(( $(date +%s) - started )) s"
