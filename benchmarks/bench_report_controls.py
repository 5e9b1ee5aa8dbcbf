"""What the controls cost: one cold report on 48 images of a user's folder (two class sub-folders), its steps timed side by side.

Every report step is tagged as analysis or control (`report.report_plan`); this prints the seconds of each, the analysis
total, the controls total and the ratio (report with controls) / (report without them). Target (issue 26): ≤ 3×.
Usage: python benchmarks/bench_report_controls.py [--model NAME|PATH] [--threads N]
"""
import argparse, tempfile, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from sparsediff.report import analyse, ReportConfig
from sparsediff.data import load_crops

def users_folder(root: Path, n: int = 48) -> Path:
    "A user's folder of `n` photos' crops in two class sub-folders (by source photo), saved as PNG files."
    crops = load_crops(split='test', n=n, seed=7)
    for i, (x, y) in enumerate(zip(crops.images, crops.labels)):
        d = root/f'class{int(y) % 2}'; d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d/f'{i:03d}.png')
    return root

if __name__ == '__main__':
    ap = argparse.ArgumentParser(); ap.add_argument('--model', default='default'); ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args(); torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as d:
        data = users_folder(Path(d)/'photos')
        t = time.time()
        r = analyse(a.model, data, Path(d)/'cache', ReportConfig(device='cpu'), progress=True)
        wall = time.time() - t
    steps = r['step_seconds']
    print(f'{"step":<34} {"kind":<9} seconds')
    for name, (sec, control) in steps.items(): print(f'{name:<34} {"control" if control else "analysis":<9} {sec:8.1f}')
    analysis = sum(s for s, c in steps.values() if not c); controls = sum(s for s, c in steps.values() if c)
    print(f'\nanalysis {analysis:.1f} s, controls {controls:.1f} s, wall {wall:.1f} s ({a.threads} threads, model {a.model}, 48 images)')
    print(f"report with controls / without: {wall / (wall - controls):.2f}x (target <= 3x; without = wall time less the control steps)")
