"The recipe sweep script: results accumulate across runs, scored candidates are skipped, recipes are valid configs."
import importlib.util, os, sys
from pathlib import Path
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture
def sweep(tmp_path, monkeypatch):
    monkeypatch.setenv('SWEEP_DIR', str(tmp_path))
    spec = importlib.util.spec_from_file_location('sweep_under_test', ROOT/'tools'/'sweep.py')
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def test_results_accumulate_and_skip(sweep, tmp_path):
    assert sweep.RESULTS == tmp_path/'results.csv' and sweep.done_names() == set()
    sweep.append({'name': 'a', 'dead_mid': 3})
    sweep.append({'name': 'b', 'knn_phi': 0.5})           # a new column joins the table
    df = pd.read_csv(sweep.RESULTS)
    assert list(df.name) == ['a', 'b'] and df.dead_mid.tolist()[0] == 3 and pd.isna(df.knn_phi[0]) and df.knn_phi[1] == 0.5
    assert sweep.done_names() == {'a', 'b'}

def test_candidates_are_valid_train_configs(sweep):
    from sparsediff.train import TrainConfig, lr_at
    for name, (init, over) in sweep.CANDIDATES.items():
        assert init in ('scratch', 'default')
        cfg = TrainConfig(steps=sweep.SWEEP_STEPS, **{**sweep.BASE, **over})
        lrs = [lr_at(s, cfg) for s in range(cfg.steps)]
        assert max(lrs) == cfg.lr and min(lrs) > 0 and cfg.data == 'natural'
        if cfg.schedule == 'cosine': assert lrs[-1] < 0.05 * cfg.lr     # the fall reaches the floor by the end
