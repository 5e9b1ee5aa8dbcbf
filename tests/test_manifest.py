"Every shipped model says what it trained on, and no evaluation set overlaps it."
import importlib.util, json
from pathlib import Path
import pytest
from sparsediff.unet import list_pretrained, pretrained_dir, training_manifest, seen_band, seen_split, unseen_bands

ROOT = Path(__file__).parent.parent

def _manifests():
    spec = importlib.util.spec_from_file_location('write_manifests', ROOT/'tools'/'write_manifests.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod.MANIFESTS

@pytest.mark.parametrize('name', list_pretrained())
def test_every_shipped_model_has_the_manifest_its_mixture_implies(name):
    "manifest.json exists for every shipped model and equals what tools/write_manifests.py derives from the mixtures' code."
    expected = _manifests()
    assert name in expected, f'{name} is shipped but tools/write_manifests.py does not describe its training data'
    stored = json.loads((pretrained_dir(name)/'manifest.json').read_text())
    assert stored == json.loads(json.dumps(expected[name]))

def test_default_saw_what_it_inherited():
    "default was warm-started from default_v1: it saw the left 70 % of camera/coffee/rocket, not their right 30 %."
    m = training_manifest('default')
    assert seen_band(m, 'camera', (0.0, 0.7)) and not seen_band(m, 'camera', (0.7, 1.0))
    assert unseen_bands(m, 'coffee') == [(0.7, 1.0)] and unseen_bands(m, 'china') == [(0.0, 1.0)]
    assert seen_split(m, 'mnist', 'train') and not seen_split(m, 'mnist', 'test')

def test_missing_manifest_is_an_error(tmp_path):
    (tmp_path/'config.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='unknown'): training_manifest(str(tmp_path))
