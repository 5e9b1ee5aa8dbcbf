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
    assert seen_band(m, 'camera', (0.0, 0.7)) and not seen_band(m, 'camera', (0.7, 1.0), validation=False)
    assert unseen_bands(m, 'coffee', validation=False) == [(0.7, 1.0)] and unseen_bands(m, 'china', validation=False) == [(0.0, 1.0)]
    assert unseen_bands(m, 'coffee') == [] and unseen_bands(m, 'china') == []          # used to choose the model: not unseen
    assert seen_split(m, 'mnist', 'train') and not seen_split(m, 'mnist', 'test')

def test_missing_manifest_is_an_error(tmp_path):
    (tmp_path/'config.json').write_text('{}')
    with pytest.raises(FileNotFoundError, match='unknown'): training_manifest(str(tmp_path))

def test_no_demo_evaluation_set_overlaps_what_its_model_trained_on():
    "Each demo part's data lies outside its model's training batches: test digits for the digits model; for default, photo bands it never trained on, named as the validation data they are."
    from sparsediff.report import DEMO_PARTS, validation_photos
    from sparsediff.controls import validation_pictures
    from sparsediff.data import load_photo
    assert DEMO_PARTS, 'the demo analyses no data'
    for model, data in DEMO_PARTS:
        m = training_manifest(model)
        if data == 'mnist': assert not seen_split(m, 'mnist', 'test'), f'{model} trained on the MNIST test split'
        elif data == 'validation-photos':
            pics = validation_pictures(m)
            assert len(pics) >= 2 and set(pics) <= set(m['validation']['photos'])
            for name, p in pics.items():
                x0 = 1 - p.shape[-1] / load_photo(name).shape[-1]               # the band is the right-hand part of the photo
                assert not seen_band(m, name, (x0 + 1e-6, 1.0), validation=False), f'{model} trained on part of {name}'
            assert validation_photos(model, n=20).name == 'validation-photos'     # the data set says what it is
        elif data == 'scenes':
            from sparsediff.scenes import SceneStream
            assert not m['datasets'] and not m['photos'] and m['generated'], f'{model} trained on more than rendered scenes'
            blocks = {SceneStream(seed=s).scene_seed(i) for s in (0, 1) for i in range(40_000 // 8)}    # every block both training streams (seeds 0 and 1) drew
            assert 3 not in blocks, 'the held-out scenes (render seed 3) are a training block'
        else: pytest.fail(f'demo data {data!r} has no overlap check: add one here before using it')

def test_the_old_texture_and_unseen_lists_were_trained_on():
    "What the review found: default trained on brick/grass/gravel whole and on horse, so none of them may be called held out."
    m = training_manifest('default')
    for name in ('brick', 'grass', 'gravel', 'horse', 'shepp_logan_phantom'): assert seen_band(m, name, (0.7, 1.0))

def test_a_model_adjusted_on_photos_records_them_as_validation():
    "A run that re-initialised channels on a probe (revive_every > 0) or was chosen by a sweep must name those photos under validation."
    for name in list_pretrained():
        cfg = json.loads((pretrained_dir(name)/'config.json').read_text())
        revived = cfg.get('train_config', {}).get('revive_every', 0) or any(h.get('revived_dead_channels') for h in cfg.get('history', []))
        photo_probe = revived and cfg.get('train_config', {}).get('data') in ('natural', 'mixture')
        if photo_probe: assert training_manifest(name)['validation']['photos'], f'{name} was adjusted on photos its manifest does not name'
