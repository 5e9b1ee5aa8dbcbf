#!/usr/bin/env bash
# Install everything the test suite needs, then run the notebooks' tests and the pytest suite.
# Usage: bash tools/test.sh            (fast suite + browser tests)
#        SPARSEDIFF_FLAGS="slow" bash tools/test.sh   (also run notebook cells flagged slow)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -z "${SPARSEDIFF_SKIP_INSTALL:-}" ]; then   # set it to reuse an environment already installed (e.g. a git worktree on PYTHONPATH)
$PY -m pip install -q torch==2.13.0            # the CPU wheel; a range in setup.py keeps users' CUDA builds
$PY -m pip install -q -e ".[dev]"
fi
if [ -z "${SPARSEDIFF_SKIP_INSTALL:-}" ] && ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi
export SPARSEDIFF_CACHE=${SPARSEDIFF_CACHE:-$(mktemp -d)}
export PYTHONHASHSEED=0
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # two notebook workers on two cores: one thread each, no oversubscription
echo "== nbdev_export must leave no diff"
nbdev_export
git diff --exit-code -- sparsediff || { echo "sparsediff/ differs from the notebooks: run nbdev_export and commit"; exit 1; }
echo "== notebooks (nbdev_test)"
nbdev_test --n_workers 2 --timing ${SPARSEDIFF_FLAGS:+--flags "$SPARSEDIFF_FLAGS"}
echo "== GPU check, dry run: tiny sizes on the CPU (on a GPU: bash tools/gpu_check.sh)"
bash tools/gpu_check.sh --dry-run "$(mktemp -d)"
echo "== pytest"
set +e
$PY -m pytest tests -q -p no:cacheprovider --timeout 1800
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi
exit $rc
