"Tests of sparsediff.controls and the verdict rule: known answers that a wrong rule would fail."
import numpy as np, pytest, torch
from sparsediff.controls import (verdict, metric_verdict, compare_with_controls, planted_sparse_code, random_init, simple_statistics,
                                 disjoint_crops, cluster_count, TRAINED)
from sparsediff.analysis import bimodality_test, bimodality_coefficient, channel_selectivity
from sparsediff.unet import UNet, UNetConfig


def test_verdict_directions_and_spread():
    assert verdict(0.9, {'a': 0.85})['verdict'] == 'holds'
    assert verdict((0.9, 0.1), {'a': (0.85, 0.0)})['verdict'] == 'uninformative'        # margin 0.05 inside the spread 0.1
    assert verdict(0.55, {'random-init': 0.86, 'pixels': 0.9})['best_control'] == 'pixels'
    assert verdict(0.55, {'random-init': 0.86})['verdict'] == 'does not hold'
    assert verdict(0.1, {'enc3': 0.3}, higher=False)['verdict'] == 'holds'
    assert verdict(0.1, {'enc3': 0.3})['verdict'] == 'does not hold'
    assert verdict(float('nan'), {'a': 0.1})['verdict'] == 'uninformative'


def test_planted_sparse_code_holds_and_gaussian_does_not():
    x, y = planted_sparse_code(seed=1)
    gauss = [np.random.default_rng(s).normal(size=x.shape).astype(np.float32) for s in range(3)]
    good = compare_with_controls({TRAINED: [x], 'Gaussian': gauss}, y, probe=True, null=False, n_clusters=6)
    assert metric_verdict(good, 'knn_acc')['verdict'] == 'holds' and metric_verdict(good, 'linear_acc')['verdict'] == 'holds'
    bad = compare_with_controls({TRAINED: gauss, 'planted': [x]}, y, probe=False, null=False, n_clusters=6)
    assert metric_verdict(bad, 'knn_acc')['verdict'] == 'does not hold'
    spread = bad[(bad.metric == 'knn_acc') & (bad.representation == TRAINED)]['spread'].item()
    assert spread > 0                                                                        # three Gaussian seeds really differ


def test_bimodality_null():
    rng = np.random.default_rng(0)
    beta = rng.beta(20, 1, 400)
    assert bimodality_coefficient(beta) > 5 / 9 and not bimodality_test(beta)['bimodal']
    assert bimodality_test(np.r_[rng.normal(0, 0.05, 200), rng.normal(0.8, 0.05, 200)])['bimodal']
    f = np.zeros((50, 3)); f[:, 0] = rng.random(50); f[3, 1] = 1e-7; f[:, 2] = rng.random(50)
    t = channel_selectivity(f)
    assert t['kind'][1] == 'dead' and t.attrs['n_near_dead'] == 1 and t.attrs['n_zero'] == 0


def test_random_init_and_descriptor():
    net = UNet(UNetConfig.scaled(16))
    a, b = random_init(net, 3), random_init(net, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.enc1[0][0].weight, random_init(net, 4).enc1[0][0].weight)
    x = torch.rand(6, 3, 16, 16)
    f = simple_statistics(x)
    assert f.shape == (6, 10) and np.allclose(f.mean(0), 0, atol=1e-5)                      # standardized columns
    assert cluster_count(1000, 10) == 100 and cluster_count(60, 3) == 12 and cluster_count(8, 3) == 3


def test_disjoint_crops_never_cross_the_cut():
    pic = torch.zeros(3, 96, 200); pic[..., 100:] = 1
    ref, qry = disjoint_crops([pic], n_per=25)
    assert ref.images.max() == 0 and qry.images.min() == 1
