"""Semantics and selectivity on a memory-mapped φ: read in blocks (never copied whole), with the results of the in-memory path."""
import json, os, subprocess, sys, textwrap
import numpy as np, pandas as pd, pytest
from sparsediff.semantics import (planted_clusters, cosine_knn, knn_hits, knn_accuracy, kmeans, purity, streams, fit_preprocess,
                                  PREPROCESS, knn_cv_hits, blocked_knn_cv_hits)
from sparsediff.analysis import channel_selectivity, top_activating

@pytest.fixture
def data(tmp_path):
    "Overlapping planted clusters (kNN accuracy well below 1) in memory and as a read-only memory map of the same rows."
    x, y = planted_clusters(6, per=50, dim=24, spread=1.2, seed=2)
    np.save(tmp_path/'phi.npy', x)
    return x, y, np.load(tmp_path/'phi.npy', mmap_mode='r')

def test_only_memory_maps_and_huge_arrays_stream(data):
    x, y, m = data
    assert streams(m) and streams(m[:10]) and not streams(x) and not streams(None) and not streams(np.asarray(m))

def test_knn_on_a_memory_map_equals_in_memory(data, device):
    x, y, m = data
    i, s = cosine_knn(m, k=5, chunk=37, device=device); ri, rs = cosine_knn(x, k=5, backend='torch')
    assert np.array_equal(i, ri) and np.allclose(s, rs, atol=1e-5)
    q = x[:40] + 0.05
    i, s = cosine_knn(q, m, k=3, chunk=16, device=device); ri, rs = cosine_knn(q, x, k=3, backend='torch')
    assert np.array_equal(i, ri) and np.allclose(s, rs, atol=1e-5)
    with pytest.raises(ValueError, match='k must be'): cosine_knn(m, k=300)

@pytest.mark.parametrize('preprocess', PREPROCESS)
def test_knn_accuracy_on_a_memory_map_equals_in_memory(data, preprocess):
    x, y, m = data
    acc = knn_accuracy(x, y, 5, preprocess=preprocess)
    assert 0.3 < acc < 0.95                                                      # a score that could differ
    assert np.array_equal(knn_hits(m, y, 5, preprocess=preprocess, chunk=50), knn_hits(x, y, 5, preprocess=preprocess))
    assert knn_accuracy(m, y, 5, preprocess=preprocess) == acc
    q, qy = x[::7] + 0.1, y[::7]
    assert knn_accuracy(m, y, 3, q, qy, preprocess, chunk=16) == knn_accuracy(x, y, 3, q, qy, preprocess)

@pytest.mark.parametrize('preprocess', PREPROCESS)
def test_cross_validated_knn_on_a_memory_map_equals_in_memory(data, preprocess, device):
    x, y, m = data
    ref = knn_cv_hits(x, y, 5, folds=5, seed=3, preprocess=preprocess)
    assert 0.3 < ref.mean() < 0.95                                                 # a score that could differ
    got = knn_cv_hits(m, y, 5, folds=5, seed=3, preprocess=preprocess, chunk=23, device=device)   # blocks that straddle folds
    assert np.array_equal(got, ref)
    assert not np.array_equal(knn_cv_hits(m, y, 5, folds=5, seed=4, preprocess=preprocess), ref)   # the folds matter

def test_moments_of_chosen_rows(data):
    x, y, m = data
    keep = y % 2 == 0
    mu, sd = __import__('sparsediff.scale', fromlist=['column_moments']).column_moments(m, 17, keep=keep)
    assert np.allclose(mu, x[keep].mean(0), atol=1e-5) and np.allclose(sd, x[keep].std(0), atol=1e-5)
    assert np.allclose(fit_preprocess(m, 'zscore', keep=keep)(x), fit_preprocess(x[keep], 'zscore')(x), atol=1e-4)
    assert np.allclose(fit_preprocess(x, 'centre', keep=keep)(x), x - x[keep].mean(0), atol=1e-4)

def test_streamed_preprocess_and_nan(data, tmp_path):
    x, y, m = data
    for mode in PREPROCESS: assert np.allclose(fit_preprocess(m, mode)(x), fit_preprocess(x, mode)(x), atol=1e-5)
    bad = x.copy(); bad[7, 3] = np.nan; np.save(tmp_path/'bad.npy', bad)
    with pytest.raises(ValueError, match=r'NaN or inf \(rows \[7\]'): knn_accuracy(np.load(tmp_path/'bad.npy', mmap_mode='r'), y)

def test_selectivity_on_a_memory_map_equals_in_memory(data):
    x, y, m = data
    t, rt = channel_selectivity(m), channel_selectivity(x)
    pd.testing.assert_frame_equal(t, rt); assert t.attrs.keys() == rt.attrs.keys()
    assert all(np.allclose(t.attrs[k], rt.attrs[k], equal_nan=True) for k in t.attrs)
    for a, b in zip(top_activating(m, [0, 5], k=4, chunk=33), top_activating(x, [0, 5], k=4)): assert np.array_equal(a, b)

def test_kmeans_on_a_memory_map_streams(tmp_path, monkeypatch):
    import sparsediff.semantics as S
    x, y = planted_clusters(5, per=80, dim=16, spread=0.05, seed=0)
    np.save(tmp_path/'phi.npy', x); m = np.load(tmp_path/'phi.npy', mmap_mode='r')
    calls = []; real = S.streaming_kmeans
    monkeypatch.setattr(S, 'streaming_kmeans', lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    lab, cent = kmeans(m, 5, batch_size=64)
    assert calls and calls[0]['block'] == 64 and lab.shape == (400,) and lab.dtype == np.int64 and cent.shape == (5, 16)
    assert purity(y, lab) > 0.99
    kmeans(x, 5); assert len(calls) == 1                                        # in memory: scikit-learn's KMeans, as before
    with pytest.raises(ValueError, match='n_clusters must be'): kmeans(m, 401)

CHILD = textwrap.dedent('''
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from sparsediff.semantics import knn_accuracy, kmeans
    from sparsediff.analysis import channel_selectivity
    status = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) * 1024
    a, y = np.load(sys.argv[1], mmap_mode='r'), np.load(sys.argv[2])
    q, qy = np.array(a[:300]) + 0.01, y[:300]
    small = a[:5000]                                     # the same code paths on a small map first: imports and thread pools are not counted
    knn_accuracy(small, y[:5000], queries=q, query_labels=qy, preprocess='centre'); channel_selectivity(small); kmeans(small, 8)
    before = status('VmRSS')
    try: open('/proc/self/clear_refs', 'w').write('5')   # peak RSS := RSS now (else the warm-up's peak counts too: stricter)
    except OSError: pass
    acc = knn_accuracy(a, y, 5, queries=q, query_labels=qy, preprocess='centre'); steps = [status('VmHWM')]
    sel = channel_selectivity(a); steps.append(status('VmHWM'))
    lab, cent = kmeans(a, 8); steps.append(status('VmHWM'))
    print(json.dumps(dict(before=before, peak=steps[-1], steps=steps, nbytes=a.nbytes, acc=acc, channels=len(sel), clusters=len(np.unique(lab)), rows=len(lab))))
''')

def test_memory_stays_flat_on_an_800_mb_memory_map(tmp_path):
    """knn_accuracy (centred), channel_selectivity and kmeans on a memory-mapped (400,000, 512) float32 .npy, in a fresh process: its peak RSS grows by well under the array.
    The peak is the process's own (VmHWM): a child's ru_maxrss starts at the peak of the process that spawned it (pytest, with torch loaded)."""
    n, c = 400_000, 512
    y, rng = np.arange(n) % 10, np.random.default_rng(0)
    with open(tmp_path/'phi.npy', 'wb') as f:                  # plain file writes, fsynced, as a φ store's are
        np.lib.format.write_array_header_1_0(f, {'descr': '<f4', 'fortran_order': False, 'shape': (n, c)})
        for i0 in range(0, n, 50_000):
            f.write((rng.random((50_000, c), dtype=np.float32) + (y[i0:i0 + 50_000, None] == np.arange(c) % 10)).tobytes())
        f.flush(); os.fsync(f.fileno())
    np.save(tmp_path/'y.npy', y)
    r = subprocess.run([sys.executable, '-c', CHILD, str(tmp_path/'phi.npy'), str(tmp_path/'y.npy')], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads(r.stdout.strip().splitlines()[-1])
    assert m['channels'] == c and m['rows'] == n and m['clusters'] == 8 and m['acc'] > 0.9
    grew = m['peak'] - m['before']
    print(f"RSS before {m['before'] / 1e6:.0f} MB, peak {m['peak'] / 1e6:.0f} MB (after kNN, selectivity, KMeans: {[round(v / 1e6) for v in m['steps']]}): "
          f"grew {grew / 1e6:.0f} MB for an array of {m['nbytes'] / 1e6:.0f} MB")
    assert grew < 0.4 * m['nbytes'], grew

def test_masks_and_keywords_are_checked(data):
    x, y, m = data
    from sparsediff.scale import column_moments, streaming_knn
    with pytest.raises(ValueError, match=r'keep must be an \(300,\) bool'): column_moments(m, 17, keep=np.ones(299, bool))
    with pytest.raises(ValueError, match='exclude must be'): streaming_knn(x[:3], m, 2, exclude=np.zeros(len(m)))      # floats, not bool
    with pytest.raises(ValueError, match='backend'): knn_cv_hits(m, y, 5, backend='fast')
    with pytest.raises(TypeError): knn_cv_hits(m, y, 5, backnd='torch')                                              # a typo is not swallowed
