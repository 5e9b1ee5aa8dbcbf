"""User text reaches figures as literal text (issue 25 item 4): a class folder named like an HTML link stays text in legends,
hover text and subplot titles."""
import json
import numpy as np, torch
from sparsediff.analysis import plot_channel_scatter
from sparsediff.semantics import plot_embedding, plot_neighbours
from sparsediff.core import escape_text

EVIL = '<a href="https:evil.example">Click here</a><b>bold</b>'
NAMES = [EVIL, 'cats']

def raw_markup(fig) -> bool:
    s = json.dumps(fig.to_plotly_json(), default=str)
    return '<a href' in s or '<b>bold' in s

def test_escape_text_keeps_the_words():
    assert escape_text(EVIL) == '&lt;a href="https:evil.example"&gt;Click here&lt;/a&gt;&lt;b&gt;bold&lt;/b&gt;'

def test_legends_of_embeddings_and_scatters_escape_class_names():
    rng = np.random.default_rng(0); labels = np.arange(20) % 2
    for fig in (plot_embedding(rng.normal(size=(20, 2)), labels, NAMES), plot_channel_scatter(rng.random((20, 4)), [0, 1], labels, NAMES)):
        assert not raw_markup(fig) and any(t.name == escape_text(EVIL) for t in fig.data)

def test_neighbour_titles_escape_class_names():
    x = torch.rand(12, 3, 8, 8); labels = np.arange(12) % 2
    fig = plot_neighbours(x, {'pixels': x.flatten(1).numpy()}, [0], k=2, labels=labels, class_names=NAMES, max_name=100)
    assert not raw_markup(fig) and '&lt;a href' in json.dumps(fig.to_plotly_json(), default=str)
