"""Sparsity analyses (`sparsediff.analysis`) and semantic analyses (`sparsediff.semantics`): behaviour on planted data, error paths, scale paths."""
import sys, types
import numpy as np, pandas as pd, pytest, torch
from sparsediff.analysis import (participation_ratio, block_sparsity, sparsity_summary, noise_stability, stability_summary, row_cosine,
                                 channel_selectivity, channel_groups, dead_channel_mask, otsu_threshold, bimodality_coefficient,
                                 top_activating, union_of_subspaces, support_size, default_channels, plot_block_sparsity,
                                 plot_noise_stability, plot_selectivity, plot_top_activating, plot_union_of_subspaces, plot_channel_scatter)
from sparsediff.semantics import (cosine_knn, knn_accuracy, kmeans, cluster_scores, purity, centroid_separation, fraction_separated,
                                  matched_gaussian, planted_clusters, linear_probe, compare_representations, pixel_features, mean_colour,
                                  pca_features, tsne_embedding, plot_embedding, plot_neighbours, plot_separation, plot_comparison)
from sparsediff.unet import UNet, UNetConfig, BLOCKS

@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0); return UNet(UNetConfig.scaled(8)).eval()

@pytest.fixture(scope='module')
def images():
    return torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(0))

def labelled(fig):
    "Title and at least one axis title set on a plotly figure."
    lay = fig.layout
    axes = [lay.xaxis.title.text, lay.yaxis.title.text] + ([lay.scene.xaxis.title.text] if lay.scene else [])
    return bool(lay.title.text) and any(axes)

# --- participation ratio ---------------------------------------------------------------------------------------------

def test_participation_ratio_bounds_and_extremes():
    d = 10
    assert np.allclose(participation_ratio(np.eye(d)), 1 / d)
    assert np.allclose(participation_ratio(np.ones((2, d))), 1)
    r = np.random.default_rng(0).random((500, d))
    p = participation_ratio(torch.tensor(r))
    assert p.shape == (500,) and (p >= 1 / d - 1e-12).all() and (p <= 1 + 1e-12).all()
    assert np.isnan(participation_ratio(np.zeros(d)))
    assert np.allclose(participation_ratio(-r), p)                   # sign does not matter
    with pytest.raises(ValueError, match='at least one'): participation_ratio(np.zeros((3, 0)))

def test_block_sparsity_table(model, images):
    t = block_sparsity(model, images, sigma=0.1, blocks=('enc1', 'mid', 'dec1'))
    assert set(t['block']) == {'enc1', 'mid', 'dec1'} and set(t['which']) == {'input', 'output'}
    assert len(t) == 12 * 3 * 2 and (t['pr'] >= 1 / t['channels'] - 1e-9).all() and (t['pr'] <= 1 + 1e-9).all()
    assert list(sparsity_summary(t).index) == ['enc1', 'mid', 'dec1']
    again = block_sparsity(model, images, sigma=0.1, blocks=('enc1', 'mid', 'dec1'))
    assert np.array_equal(t['pr'].to_numpy(), again['pr'].to_numpy())   # seeded: repeatable
    assert labelled(plot_block_sparsity(t))

def test_noise_stability(model, images):
    t = noise_stability(model, images, sigmas=(0.05, 0.5), sigma_ref=0.5, blocks=('mid', 'dec1'), n_noise=2)
    assert len(t) == 2 * 2 * 2 * 12 and t.attrs['sigma_ref'] == 0.5
    assert (t['cosine'].mean() > t['cosine_centred'].mean())                     # the mean ā shared by every image inflates the raw cosine
    assert np.allclose(t.query('sigma == 0.5')['cosine'].to_numpy() > 0, True)
    assert stability_summary(t, 'cosine_centred', min_sigma=0.1).shape == (2, 1)
    assert stability_summary(t).shape == (2, 2)
    assert labelled(plot_noise_stability(t))
    with pytest.raises(ValueError, match='equal shapes'): row_cosine(np.ones((2, 3)), np.ones((3, 3)))

# --- selectivity, top images, union of subspaces ------------------------------------------------------------------

def planted_channels(n=200, seed=0):
    rng = np.random.default_rng(seed)
    f = np.zeros((n, 12), np.float32); f[:, :4] = rng.uniform(0.5, 1.0, (n, 4))
    for g in range(4): f[g * n // 4:(g + 1) * n // 4, 4 + 2 * g:6 + 2 * g] = rng.uniform(1, 3, (n // 4, 2))
    return f

def test_selectivity_kinds_dead_and_memmap(tmp_path):
    f = np.c_[planted_channels(), np.zeros(200, np.float32)]                       # channel 12 is dead
    np.save(tmp_path / 'phi.npy', f)
    mm = np.load(tmp_path / 'phi.npy', mmap_mode='r')
    t = channel_selectivity(mm, chunk=33)
    assert t['kind'].tolist() == ['common'] * 4 + ['specialized'] * 8 + ['dead']
    assert np.isnan(t['selectivity'][12]) and t.attrs['n_dead'] == 1 and t.attrs['n_images'] == 200
    assert np.allclose(t['selectivity'].fillna(0), channel_selectivity(torch.tensor(f))['selectivity'].fillna(0))
    assert dead_channel_mask(mm).tolist() == [False] * 12 + [True]
    assert 'excluded' in plot_selectivity(t).layout.title.text
    with pytest.raises(ValueError, match=r'\(N, C\)'): channel_selectivity(np.ones(4))

def test_otsu_and_bimodality():
    v = np.r_[np.full(10, 0.1), np.full(10, 0.9)]
    assert 0.1 < otsu_threshold(v) < 0.9
    assert np.isnan(otsu_threshold([0.5, 0.5]))
    rng = np.random.default_rng(0)
    assert bimodality_coefficient(rng.normal(size=2000)) < 5 / 9 < bimodality_coefficient(np.r_[rng.normal(size=500), rng.normal(size=500) + 8])

def test_top_activating_matches_sort_and_errors(tmp_path):
    v = np.random.default_rng(1).normal(size=(500, 6)).astype(np.float32)
    np.save(tmp_path / 'v.npy', v)
    idx, val = top_activating(np.load(tmp_path / 'v.npy', mmap_mode='r'), [5, 1], k=7, chunk=64)
    assert np.array_equal(idx, np.argsort(-v[:, [5, 1]], 0)[:7].T) and np.allclose(val, -np.sort(-v[:, [5, 1]], 0)[:7].T)
    with pytest.raises(ValueError, match='k must'): top_activating(v, k=501)
    with pytest.raises(IndexError, match='channels'): top_activating(v, [-1])
    fig = plot_top_activating(torch.rand(500, 3, 8, 8), v, [0, 1], k=3)
    assert len(fig.data) == 6 and fig.layout.title.text

def test_union_of_subspaces_planted():
    f = planted_channels(); t = channel_selectivity(f)
    u = union_of_subspaces(f, t, channels=[4, 6], k=40, n_special=2)
    assert (u['concentration'][:2] > 0.999).all() and u['concentration'].iloc[-1] < 0.7
    assert u['group'].iloc[-1].startswith('random')
    assert (u['support'][:2] <= 6).all() and support_size(np.zeros((5, 3))) == 0
    with pytest.raises(ValueError, match='no specialized channel'): union_of_subspaces(f, t, k=150)
    assert labelled(plot_union_of_subspaces(f, t, channels=[4, 6], k=40))
    assert labelled(plot_channel_scatter(f, [4, 6], np.repeat(np.arange(4), 50)))
    assert labelled(plot_channel_scatter(f, [4, 6, 8]))
    with pytest.raises(ValueError, match='2 or 3'): plot_channel_scatter(f, [4])

# --- semantics -------------------------------------------------------------------------------------------------------

def test_cosine_knn_brute_force_chunks_and_errors():
    x = np.random.default_rng(0).normal(size=(257, 8)).astype(np.float32)
    u = x / np.linalg.norm(x, axis=1, keepdims=True); s = u @ u.T; np.fill_diagonal(s, -np.inf)
    for chunk in (1, 50, None):
        idx, sims = cosine_knn(torch.tensor(x), k=3, chunk=chunk, backend='torch')
        assert np.array_equal(idx, np.argsort(-s, 1)[:, :3]) and np.allclose(sims, -np.sort(-s, 1)[:, :3], atol=1e-5)
    with pytest.raises(ValueError, match='k must'): cosine_knn(x, k=257)
    with pytest.raises(ValueError, match='backend'): cosine_knn(x, backend='annoy')
    with pytest.raises(ValueError, match='query_ids'): cosine_knn(x[:3], x, query_ids=[0])
    with pytest.raises(ValueError, match=r'\(N, C\)'): cosine_knn(x[0])

def test_cosine_knn_faiss_glue(monkeypatch):
    class FlatIP:
        def __init__(self, d): self.x = np.zeros((0, d), np.float32)
        def add(self, x): self.x = np.r_[self.x, x]
        def search(self, q, k):
            s = q @ self.x.T; i = np.argsort(-s, 1, kind='stable')[:, :k]; return np.take_along_axis(s, i, 1), i
    monkeypatch.setitem(sys.modules, 'faiss', types.SimpleNamespace(IndexFlatIP=FlatIP))
    x = np.random.default_rng(2).normal(size=(100, 5)).astype(np.float32)
    fi, fs = cosine_knn(x, k=4, backend='faiss'); ti, ts = cosine_knn(x, k=4, backend='torch')
    assert np.array_equal(fi, ti) and np.allclose(fs, ts, atol=1e-5)
    assert not (fi == np.arange(100)[:, None]).any()

def test_knn_kmeans_scores_on_planted_clusters():
    x, y = planted_clusters(n_clusters=6, per=30, seed=3)
    assert knn_accuracy(x, y) > 0.98
    a, c = kmeans(x, 6); assert c.shape == (6, x.shape[1])
    sc = cluster_scores(y, a); assert sc['nmi'] > 0.99 and sc['purity'] > 0.99
    assert cluster_scores(y, kmeans(x, 6, minibatch=True, batch_size=32)[0])['nmi'] > 0.9
    assert purity([0, 1, 0, 1], [0, 0, 0, 0]) == 0.5
    with pytest.raises(ValueError, match='n_clusters'): kmeans(x, len(x) + 1)
    with pytest.raises(ValueError, match='non-negative'): knn_accuracy(x, np.full(len(x), -1))

def test_centroid_separation_gaussians_and_null():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 8]; y = np.repeat([0, 1], 300)
    t = centroid_separation(x, y)
    assert len(t) == 1 and t['separation'][0] > 2 and fraction_separated(t) == 1
    assert fraction_separated(centroid_separation(x, rng.permutation(y))) == 0
    g = matched_gaussian(x, 5000, seed=1)
    assert g.shape == (5000, 5) and np.allclose(np.cov(g.T), np.cov(x.T), rtol=0.1, atol=0.1)
    with pytest.raises(ValueError, match='one entry per row'): centroid_separation(x, y[:5])

def test_linear_probe_and_baselines():
    x, y = planted_clusters(seed=4)
    assert linear_probe(x, y) > 0.95
    assert linear_probe(x, np.random.default_rng(0).permutation(y)) < 0.5
    im = torch.rand(20, 3, 8, 8)
    assert pixel_features(im).shape == (20, 192) and mean_colour(im).shape == (20, 3)
    assert pca_features(pixel_features(im), 5).shape == (20, 5)

def test_compare_representations_table():
    x, y = planted_clusters(seed=5)
    t = compare_representations({'good': x, 'noise': np.random.default_rng(0).normal(size=x.shape)}, y, probe=True, null=True)
    assert list(t.index) == ['good', 'noise']
    assert {'knn_acc', 'nmi', 'purity', 'frac_gt_2std', 'frac_gt_2std_labels', 'sep_ratio', 'sep_null_spread', 'linear_acc'} <= set(t.columns)
    assert t.loc['good', 'knn_acc'] > 0.95 > t.loc['noise', 'knn_acc']
    assert labelled(plot_comparison(t))
    with pytest.raises(ValueError, match='at least one'): compare_representations({}, y)
    with pytest.raises(ValueError, match="'b' has 3 rows"): compare_representations({'a': x, 'b': x[:3]}, y)

def test_semantic_figures():
    x, y = planted_clusters(per=20)
    emb, rows = tsne_embedding(x, n=60)
    assert emb.shape == (60, 2) and len(np.unique(rows)) == 60
    assert labelled(plot_embedding(emb, y[rows]))
    assert labelled(plot_separation({'labels': centroid_separation(x, y)}))
    a, = plot_separation({'labels': centroid_separation(x, y)}, threshold=2).layout.annotations   # the '2 std' label of the threshold line
    assert a.text == '2 std' and a.x == 2 and a.xanchor == 'left' and a.xshift > 0                # right of the line, not on it
    assert a.yref == 'y domain' and a.y == 1 and a.yanchor == 'top' and a.yshift < 0               # hangs below the plot's top edge
    im = torch.rand(len(x), 3, 8, 8)
    fig = plot_neighbours(im, {'a': x, 'px': pixel_features(im)}, [0, 5], k=2, labels=y)
    assert len(fig.data) == 2 * (1 + 2 * 2) and fig.layout.title.text

@pytest.mark.slow
def test_scale_100k():
    big = np.random.default_rng(0).random((100_000, 64), dtype=np.float32)
    idx, _ = cosine_knn(big[:500], big, k=5, query_ids=np.arange(500), backend='torch')
    assert idx.shape == (500, 5) and not (idx == np.arange(500)[:, None]).any()
    a, _ = kmeans(big, 50, n_init=1)
    assert len(np.unique(a)) == 50
    assert len(channel_selectivity(big, chunk=8192)) == 64
