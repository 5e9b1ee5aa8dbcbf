#!/usr/bin/env python
"""Execute notebooks in place on the shipped model and store their outputs, so the docs show figures and numbers.

    python tools/run_notebooks.py nbs/00_core.ipynb nbs/04_hooks.ipynb   # some notebooks
    python tools/run_notebooks.py                                          # every concept notebook (CONCEPT below)
    python tools/run_notebooks.py --flags slow nbs/06_sparsity.ipynb       # also run cells flagged `#| slow`

Runs each notebook's cells in order in one execnb shell (the engine `nbdev_test` uses), with the notebook's folder as the
working directory, one thread (OMP_NUM_THREADS=1), PYTHONHASHSEED=0 and every RNG seeded before the first cell, so a
rerun stores the same numbers. Cells `nbdev_test` skips are skipped here too (flags in settings.ini's `tst_flags`, unless
given with `--flags`) and keep no output; so is the cell that calls `nbdev_export`. `show_doc` cells run but store
nothing (the docs build renders them afresh, and their source line numbers would churn the diff). Plotly figures are stored as plotly
JSON (`application/vnd.plotly.v1+json`, no copy of plotly.js), widget views (useless without a kernel) are dropped, and
`nbdev_clean` then strips execution counts and metadata. A cell that fails stops its notebook, which is left unchanged.
Prints each notebook's time and stored output size.
"""
import argparse, json, os, re, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The notebooks that explain a concept on the shipped model (the docs pages a reader learns from).
CONCEPT = ['00_core', '01_data', '02_unet', '03_train', '04_hooks', '05_phi', '06_sparsity', '07_semantics', '08_sampler', '08a_judges',
           '09_distance', '10_scenes', '11_probe', '12_widgets', '13_report', '14_cli']
DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)', re.M)
WIDGET = 'application/vnd.jupyter.widget-view+json'
PLOTLY = 'application/vnd.plotly.v1+json'
SETUP = """\
import os, random, numpy as np, torch
random.seed(0); np.random.seed(0); torch.manual_seed(0); torch.set_num_threads(1)
import plotly.io as _pio
_pio.renderers.default = 'plotly_mimetype'   # figures as plotly JSON, no plotly.js in the notebook
"""

def settings_flags() -> set:
    "The test flags declared in settings.ini (`tst_flags`)."
    m = re.search(r'^tst_flags\s*=\s*(.*)$', (ROOT/'settings.ini').read_text(), re.M)
    return set(m[1].split()) if m else set()

def skipped(cell: dict, skip: set) -> bool:
    "Would `nbdev_test` skip this cell: not code, flagged with a skipped flag, `eval: false`, or the `nbdev_export` call?"
    if cell['cell_type'] != 'code': return True
    src = ''.join(cell['source'])
    if 'nbdev_export(' in src or re.search(r'^\s*#\|\s*eval:\s*false', src, re.M | re.I): return True
    return bool(set(DIRECTIVE.findall(src)) & skip)

def keep(out: dict) -> bool:
    "Is an output worth storing (not a widget view, which needs the live kernel, nor an empty result)?"
    return out.get('output_type') not in ('execute_result', 'display_data') or bool(out.get('data')) and WIDGET not in out['data']

def run_notebook(path: Path, skip: set, timeout: float) -> dict:
    "Execute `path` in place (unless a cell fails); return its time, cells run and skipped, and stored output bytes."
    from execnb.shell import CaptureShell
    from execnb.nbio import read_nb, write_nb
    nb = read_nb(path)
    shell, t0, ran, skips = CaptureShell(), time.perf_counter(), 0, 0
    cwd = os.getcwd(); os.chdir(path.parent)
    try:
        shell.run(SETUP)
        for cell in nb.cells:
            if cell.cell_type != 'code': continue
            docs = re.fullmatch(r'\s*show_doc\(.*\)\s*', cell.source, re.S)   # the docs build renders these afresh
            if skipped(cell, skip):
                skips += 1; cell.outputs = []; continue
            shell._cell_idx = cell.idx_ + 1
            outs = shell.run(cell.source, timeout=int(timeout)) or []
            errs = [o for o in outs if o.get('output_type') == 'error']
            if errs: raise RuntimeError(f'a cell failed:\n{cell.source[:300]}\n{errs[0].get("ename")}: {errs[0].get("evalue")}')
            cell.outputs = [] if docs else [o for o in outs if keep(o)]
            ran += 1
    finally: os.chdir(cwd)
    write_nb(nb, path)
    subprocess.run(['nbdev_clean', '--fname', str(path)], check=True, cwd=ROOT)
    cells = json.loads(path.read_text())['cells']
    size = sum(len(json.dumps(c.get('outputs', []))) for c in cells)
    figs = sum(PLOTLY in o.get('data', {}) for c in cells for o in c.get('outputs', []))
    return dict(seconds=time.perf_counter() - t0, ran=ran, skipped=skips, output_bytes=size, figures=figs)

def main(argv=None):
    ap = argparse.ArgumentParser(description='Execute notebooks in place and store their outputs (then nbdev_clean).')
    ap.add_argument('notebooks', nargs='*', help=f'notebooks to run (default: the concept notebooks {", ".join(CONCEPT)})')
    ap.add_argument('--flags', default='', help='test flags whose cells run too (e.g. "slow"); the others are skipped')
    ap.add_argument('--timeout', type=float, default=600, help='seconds one cell may take before the notebook is abandoned')
    args = ap.parse_args(argv)
    env = dict(OMP_NUM_THREADS='1', PYTHONHASHSEED='0')
    if any(os.environ.get(k) != v for k, v in env.items()):   # both must be set before Python and torch start
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **env})
    sys.path.insert(0, str(ROOT))
    paths = [Path(p).resolve() for p in args.notebooks] or [ROOT/'nbs'/f'{n}.ipynb' for n in CONCEPT]
    skip = settings_flags() - set(args.flags.split())
    total, failed = 0.0, []
    for p in paths:
        try: r = run_notebook(p, skip, args.timeout)
        except Exception as e:
            failed.append(p.name); print(f'FAILED {p.name}: {e}', file=sys.stderr); continue
        total += r['seconds']
        print(f"{p.name}: {r['seconds']:.1f} s, {r['ran']} cells run, {r['skipped']} skipped, "
              f"{r['output_bytes'] / 1024:.0f} KiB of outputs ({r['figures']} plotly figures)", flush=True)
    print(f'{len(paths) - len(failed)} notebooks in {total:.0f} s' + (f'; failed: {", ".join(failed)}' if failed else ''))
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
