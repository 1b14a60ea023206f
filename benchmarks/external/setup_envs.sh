#!/usr/bin/env bash
# Create the two peer-library virtualenvs used by the external benchmark runners:
#   benchmarks/.venvs/torch-rechub  -> torch-rechub==0.9.0
#   benchmarks/.venvs/recbole       -> recbole==1.2.1
# Both get torch==2.13.0 FIRST (the CPU build; an unpinned torch would pull a multi-GB CUDA
# build), then the library with --no-deps and the minimal set of packages it needs to import
# and train (the libraries' own requirement lists pull in things we never use: ray, thop,
# plotly, ... for RecBole).
# Idempotent: a venv whose marker file exists is skipped; FORCE=1 rebuilds.
# ONLY=torch-rechub (or ONLY=recbole) makes just that one venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENVS="${RECHUB_BENCH_VENVS:-$ROOT/benchmarks/.venvs}"
PY="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"

mkdir -p "$VENVS"

make_env() {
    local name="$1"; shift
    local marker="$VENVS/$name/.rechub-bench-ready"
    if [[ -f "$marker" && "${FORCE:-0}" != "1" ]]; then
        echo "[setup_envs] $name: present ($(cat "$marker")), skipping"
        return 0
    fi
    echo "[setup_envs] $name: creating $VENVS/$name"
    rm -rf "$VENVS/$name"
    "$PY" -m venv "$VENVS/$name"
    local pip="$VENVS/$name/bin/python -m pip"
    $pip install -q --upgrade pip >/dev/null 2>&1 || true
    # 1. torch first, pinned (CPU wheel).
    $pip install -q "$TORCH_SPEC"
    # 2. the library and its deps (given as arguments).
    "$@"
    "$VENVS/$name/bin/python" - <<EOF
import torch, numpy
print("[setup_envs] $name: torch", torch.__version__, "numpy", numpy.__version__)
EOF
    date -u +%Y-%m-%dT%H:%M:%SZ > "$marker"
}

install_torch_rechub() {
    local pip="$VENVS/torch-rechub/bin/python -m pip"
    # torch-rechub 0.9.0's core requirements are numpy, pandas, scikit-learn, torch, tqdm; none
    # pins an old version, so they resolve normally (torch is already satisfied by 2.13.0).
    $pip install -q --no-deps "torch-rechub==0.9.0"
    $pip install -q "numpy" "pandas" "scikit-learn" "tqdm" "psutil"
    "$VENVS/torch-rechub/bin/python" -c "import torch_rechub, torch_rechub.models.matching, torch_rechub.trainers, torch_rechub.utils.match; print('[setup_envs] torch_rechub import ok')"
}

install_recbole() {
    local pip="$VENVS/recbole/bin/python -m pip"
    # recbole 1.2.1 requires ray<=2.6.3 (no wheel for recent Pythons; only used by
    # recbole.quick_start's hyper-parameter tuning, which the runner never imports),
    # thop/plotly (lazy imports for FLOPs/plots). We install --no-deps and add what
    # `recbole.config/data/utils/trainer/model` import at module level.
    # numpy 2 is fine once the runner shims the removed aliases (np.float_, np.unicode_, ...).
    $pip install -q --no-deps "recbole==1.2.1"
    $pip install -q "numpy" "scipy" "pandas" "tqdm" "scikit-learn" "pyyaml" \
        "colorlog==4.7.2" "colorama==0.4.4" "tensorboard" "texttable" "tabulate" "psutil"
    "$VENVS/recbole/bin/python" - <<'EOF'
import numpy as np
for k, v in {"float_": np.float64, "complex_": np.complex128, "unicode_": np.str_,
             "bool": bool, "int": int, "float": float, "complex": complex,
             "object": object, "str": str, "long": int}.items():
    if k not in np.__dict__:
        setattr(np, k, v)
import recbole.config, recbole.data, recbole.utils, recbole.trainer
print("[setup_envs] recbole import ok")
EOF
}

case "${ONLY:-}" in
    "") make_env torch-rechub install_torch_rechub; make_env recbole install_recbole ;;
    torch-rechub) make_env torch-rechub install_torch_rechub ;;
    recbole) make_env recbole install_recbole ;;
    *) echo "[setup_envs] ONLY=$ONLY: choose torch-rechub or recbole (or leave it unset)" >&2; exit 2 ;;
esac
echo "[setup_envs] done: $VENVS"
