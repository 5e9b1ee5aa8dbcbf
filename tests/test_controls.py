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


# --- the cluster measure can fail (issue 21, item 3) -------------------------------------------------------------------
from sparsediff.controls import semantic_scores, separation_verdict, descriptor_stability
from sparsediff.semantics import (separation_score, heldout_separation, centroid_separation, kmeans, fraction_separated, planted_clusters,
                                  mean_colour, pixel_features, fit_preprocess, knn_cv_accuracy, knn_accuracy, linear_probe)


@pytest.mark.parametrize('d', [2, 10, 128])
@pytest.mark.parametrize('k', [2, 10])
def test_isotropic_gaussian_clusters_do_not_pass(d, k):
    x = np.random.default_rng(100 * d + k).normal(size=(1000, d)).astype(np.float32)
    assert fraction_separated(centroid_separation(x, kmeans(x, k)[0])) == 1.0        # the old, in-sample share: cannot fail
    sc = separation_score(x, k)
    assert sc['frac_gt_2std'] > 0.8                                                     # held out alone does not fix it ...
    assert separation_verdict(sc)['verdict'] != 'holds', sc                             # ... the null processed the same way does


@pytest.mark.parametrize('make', [lambda: planted_clusters(per=100)[0], lambda: planted_sparse_code(per=100)[0]])
def test_planted_clusters_pass(make):
    sc = separation_score(make(), 5)
    assert separation_verdict(sc)['verdict'] == 'holds' and sc['sep_ratio'] > 3, sc


def test_texture_mean_colour_does_not_pass_at_the_report_scale():
    from sparsediff.data import load_textures
    tex = load_textures('test', n=600); mc = mean_colour(tex)
    for k in (10, cluster_count(len(mc), 3)):
        sc = separation_score(mc, k)
        assert sc['frac_gt_2std'] > 0.8 and separation_verdict(sc)['verdict'] != 'holds', (k, sc)


def test_heldout_separation_uses_only_held_out_rows():
    x, _ = planted_clusters(per=50)
    t = heldout_separation(x, 5, min_size=1)
    assert set(t['fold']) == {0, 1}
    for f in (0, 1): assert t[t.fold == f][['size_a', 'size_b']].to_numpy().max() <= len(x) // 2 + 1   # group sizes count held-out rows only


# --- like with like in the read-outs (issue 21, item 6) ------------------------------------------------------------------
def offset_classes(n=200, offset=50.0, seed=0):
    "Two classes 2 apart along one axis, a nuisance axis of std 20, all on a common offset."
    rng = np.random.default_rng(seed); y = np.repeat([0, 1], n // 2)
    x = offset + np.zeros((n, 8)); x[:, 0] += np.where(y, 1.0, -1.0) + 0.3 * rng.normal(size=n); x[:, 1] += 20 * rng.normal(size=n)
    return x.astype(np.float32), y


def test_centring_fixes_a_shared_offset():
    x, y = offset_classes()
    raw, cen = knn_cv_accuracy(x, y, preprocess='none'), knn_cv_accuracy(x, y, preprocess='centre')
    assert cen > 0.95 and cen > raw + 0.1, (raw, cen)
    assert abs(knn_cv_accuracy(x - 50, y, preprocess='none') - cen) < 0.05            # centring ≈ removing the offset by hand


def test_preprocessing_is_fitted_on_the_training_rows_only():
    x, y = offset_classes()
    tr, te = x[:150], x[150:]
    np.testing.assert_allclose(fit_preprocess(tr, 'centre')(te), te - tr.mean(0), rtol=1e-4, atol=1e-3)
    z = fit_preprocess(tr, 'zscore')
    np.testing.assert_allclose(z(tr).std(0)[:2], 1, atol=1e-3); assert (z(tr)[:, 2:] == 0).all()   # constant columns stay put
    assert not np.allclose(z(te).mean(0), 0, atol=1e-2)                                 # test rows are not re-centred on themselves
    with pytest.raises(ValueError, match='preprocess must be one of'): fit_preprocess(tr, 'whiten')


def test_every_representation_goes_through_the_same_path(monkeypatch):
    import sparsediff.semantics as sem
    seen = []
    real = sem.fit_preprocess
    monkeypatch.setattr(sem, 'fit_preprocess', lambda train, mode='centre': (seen.append((np.shape(train)[1], mode)), real(train, mode))[1])
    x, y = planted_sparse_code()
    reps = {TRAINED: [x], 'pixels-like': [np.random.default_rng(0).random((len(x), 20)).astype(np.float32)]}
    compare_with_controls(reps, y, probe=True, null=False, n_clusters=6)
    modes = {d: sorted({m for dd, m in seen if dd == d}) for d in (64, 20)}
    assert modes[64] == modes[20] == ['centre', 'zscore'], modes                        # kNN centred, probe z-scored, for φ and control alike


def test_descriptor_stability_controls():
    imgs = torch.rand(48, 3, 16, 16) * 0.2 + torch.rand(48, 3, 1, 1) * 0.8
    mc = descriptor_stability(imgs, mean_colour, sigmas=(0.1,), name='mean colour')
    px = descriptor_stability(imgs, pixel_features, sigmas=(0.1,), name='pixels')
    assert mc.cosine_centred.mean() > 0.9 > px.cosine_centred.mean()
    flat = torch.full((48, 3, 16, 16), 0.5)                                              # no image differs: centred cosine is noise only
    assert abs(descriptor_stability(flat, mean_colour, sigmas=(0.1,)).cosine_centred.mean()) < 0.3


# --- uncertainty from resampling the data (issue 21, "What to build" 3) ---------------------------------------------------
from sparsediff.controls import bootstrap_sd, resampled_accuracy, combined_spread


def test_verdict_needs_both_spreads_combined():
    assert verdict((0.9, 0.03), {'a': (0.855, 0.04)})['verdict'] == 'uninformative'       # margin 0.045 > each spread, < √(0.03² + 0.04²) = 0.05
    assert verdict((0.9, 0.03), {'a': (0.84, 0.04)})['verdict'] == 'holds'
    assert verdict((0.9, 0.0), {'a': (0.85, 0.0)})['tolerance'] == 0.01                    # the floor for two exact numbers


def test_bootstrap_sd_matches_the_standard_error():
    v = np.random.default_rng(0).normal(size=400)
    assert 0.04 < bootstrap_sd(v) < 0.06                                                   # 1/√400 = 0.05
    assert bootstrap_sd(v[:1]) == 0.0
    seeds, data, both = combined_spread([0.5, 0.6], [0.03, 0.05])
    assert abs(seeds - 0.0707) < 1e-3 and data == 0.04 and abs(both - np.hypot(seeds, data)) < 1e-12


def test_every_representation_gets_a_spread_from_resampling_the_data():
    x, y = planted_sparse_code(noise=1.2, per=40)                                          # noisy: accuracies well inside (0, 1)
    big, yb = planted_sparse_code(noise=1.2, per=160)
    long = compare_with_controls({TRAINED: [x, x + 0.01], 'deterministic control': [x[:, ::-1].copy()]}, y, probe=True, null=False, n_clusters=6)
    knn = long[long.metric == 'knn_acc'].set_index('representation')
    assert (knn['data_spread'] > 0).all() and knn.loc['deterministic control', 'seed_spread'] == 0    # one array, yet a spread: the images
    assert (knn['spread'] >= knn['data_spread']).all()
    small_sd = resampled_accuracy([np.random.default_rng(s).random(240) < 0.6 for s in range(3)])[1]
    large_sd = resampled_accuracy([np.random.default_rng(s).random(960) < 0.6 for s in range(3)])[1]
    assert large_sd < 0.75 * small_sd                                                        # more images, a smaller spread
