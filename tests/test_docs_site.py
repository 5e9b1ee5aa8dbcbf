"Build the offline docs site with tools/build_docs.py, crawl every link and fragment, and check it in headless Chromium."
import functools, http.server, json, re, shutil, subprocess, sys, threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path('/usr/bin/chromium')
CHROME_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
               '--disable-sync', '--no-first-run']
SCREENSHOT = ROOT/'test_artifacts'/'docs_index.png'

def _nb(*cells):
    "A notebook dict from (cell_type, source[, outputs]) tuples."
    def cell(t, src, outs=()):
        c = dict(cell_type=t, metadata={}, source=src)
        return c | dict(execution_count=None, outputs=list(outs)) if t == 'code' else c
    return dict(nbformat=4, nbformat_minor=5, cells=[cell(*c) for c in cells],
                metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')))

def fixture_project(tmp):
    "A minimal nbdev project (index and a core notebook with a plotly output), used only while the real ones are missing."
    proj = tmp/'proj'
    (proj/'nbs').mkdir(parents=True)
    shutil.copy(ROOT/'settings.ini', proj)
    fig = {'data': [{'type': 'scatter', 'x': [1, 2, 3], 'y': [3, 1, 2]}], 'layout': {'title': {'text': 'demo'}}}
    nbs = {'index.ipynb': _nb(('markdown', '# sparsediff\n\n> Fixture index'), ('markdown', '## Install\n\nSome prose, and maths: $$\\frac{1}{HW}\\sum_{h,w} a_j$$')),
           '00_core.ipynb': _nb(('code', '#| default_exp core'), ('markdown', '# Core\n\n> Fixture core'),
                                ('code', '#| export\ndef seed_everything(seed:int=0):\n    "Seed every RNG."\n    return seed'),
                                ('code', 'fig', [dict(output_type='display_data', metadata={},
                                                      data={'application/vnd.plotly.v1+json': fig, 'text/plain': 'Figure'})]))}
    for name, nb in nbs.items(): (proj/'nbs'/name).write_text(json.dumps(nb))
    return proj

def build(project, out):
    "Run `tools/build_docs.py --out out --no-readme` in `project`."
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(out), '--no-readme'],
                       cwd=project, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

def serve(folder):
    "Serve `folder` on 127.0.0.1 on a free port in a thread; return the server."
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv

def nb_text(path, cell_type):
    "The joined sources of a notebook's cells of one type."
    return '\n'.join(''.join(c['source']) for c in json.loads(path.read_text())['cells'] if c['cell_type'] == cell_type)

def nb_title(path):
    "The first `# Title` heading of a notebook."
    return re.search(r'^#\s+(.+)$', nb_text(path, 'markdown'), re.M)[1].strip()

@pytest.fixture(scope='module')
def built(tmp_path_factory):
    "The docs site of the repo (or of a fixture project while the real notebooks are missing), built once: (project, site, real)."
    tmp = tmp_path_factory.mktemp('docs')
    real = all((ROOT/'nbs'/n).exists() for n in ('index.ipynb', '00_core.ipynb'))
    project = ROOT if real else fixture_project(tmp)
    build(project, tmp/'site')
    return project, tmp/'site', real

class PageLinks(HTMLParser):
    "The ids, links (href/src) and visible text of one HTML page."
    def __init__(self):
        super().__init__(); self.ids, self.links, self.text, self._skip = set(), [], [], 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        if tag == 'a' and a.get('name'): self.ids.add(a['name'])
        self.links += [a[k] for k in ('href', 'src') if a.get(k)]
        self._skip += tag in ('script', 'style')
    def handle_endtag(self, tag): self._skip -= tag in ('script', 'style')
    def handle_data(self, data):
        if not self._skip: self.text.append(data)

def crawl(site: Path):
    "Every internal link of every page, checked: (number checked, broken links as (page, link, why))."
    parsed = {}
    for p in site.rglob('*.html'):
        parsed[p.resolve()] = PageLinks(); parsed[p.resolve()].feed(p.read_text(encoding='utf-8'))
    checked, broken = 0, []
    for p, links in parsed.items():
        for link in links.links:
            u = urlsplit(link)
            if u.scheme or link.startswith(('//', 'data:')): continue   # external (GitHub source links) or inline
            checked += 1
            target = (p.parent/unquote(u.path)).resolve() if u.path else p
            rel = p.relative_to(site.resolve()).as_posix()
            if not target.exists(): broken.append((rel, link, 'no such file'))
            elif u.fragment and target.suffix == '.html' and not {u.fragment, unquote(u.fragment)} & parsed[target].ids:
                broken.append((rel, link, 'no such id'))
    return checked, broken, {p.relative_to(site.resolve()).as_posix(): ''.join(x.text) for p, x in parsed.items()}

def test_links_and_fragments(built):
    "Every internal link and every `#fragment` of the site exists, and no pandoc attribute text is left on a page."
    _, site, real = built
    checked, broken, text = crawl(site)
    assert checked > (500 if real else 5), checked
    assert not broken, f'{len(broken)} of {checked} links are broken: {broken[:20]}'
    stray = {p: t.count('{target=') for p, t in text.items() if '{target=' in t}
    assert not stray, f'literal {{target=...}} text on {stray}'
    assert (site/'assets'/'katex'/'katex.min.js').exists() and list((site/'assets'/'katex'/'fonts').glob('*.woff2'))

# JavaScript run in a page: what a reader would see go wrong.
PAGE_PROBLEMS = r"""() => {
  const main = document.querySelector('main.content'), right = main.getBoundingClientRect().right;
  const wide = [...main.querySelectorAll('img')].filter(i => i.getBoundingClientRect().right > right + 1)
                 .map(i => (i.getAttribute('alt') || i.src.slice(0, 40)) + ' by ' + Math.round(i.getBoundingClientRect().right - right) + ' px');
  const prose = main.cloneNode(true);   // the text a reader sees, less code, figures and KaTeX's hidden MathML copy
  prose.querySelectorAll('pre, code, script, .plotly-fig, .katex-mathml').forEach(e => e.remove());
  const text = prose.textContent;
  const sideways = [...main.querySelectorAll('.highlight pre')].filter(p => p.scrollWidth > p.clientWidth + 1)   // source that scrolls sideways
                     .map(p => p.textContent.split('\n').find(l => l.length > 0).slice(0, 60));
  return {overflow: document.documentElement.scrollWidth - window.innerWidth, wide, sideways,
          katex: main.querySelectorAll('.katex').length, katexErrors: main.querySelectorAll('.katex-error').length,
          rawMath: (text.match(/\$\$|\\frac|\\mathbb|\\sigma/g) || []).length, target: text.includes('{target=')};
}"""

def test_nbdev_warnings_are_one_line_each(tmp_path):
    "nbdev's warnings stay visible, one line each naming the notebook and the cell's first line, not the whole cell source."
    proj = fixture_project(tmp_path)
    nb = json.loads((proj/'nbs'/'00_core.ipynb').read_text())
    nb['cells'].append(_nb(('code', 'import os\nx = 1\nassert x == 1\nprint(x)'))['cells'][0])   # nbdev warns: imports and other code
    (proj/'nbs'/'00_core.ipynb').write_text(json.dumps(nb))
    r = subprocess.run([sys.executable, str(ROOT/'tools'/'build_docs.py'), '--out', str(tmp_path/'site'), '--no-readme'],
                       cwd=proj, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [l for l in (r.stdout + r.stderr).splitlines() if 'imports and other code' in l]
    assert lines == ['nbdev warning: 00_core.ipynb: Found cells containing imports and other code. See FAQ. (cell: import os)'], r.stderr
    assert 'assert x == 1' not in r.stderr and '---' not in r.stderr, r.stderr

@pytest.mark.browser
def test_docs_site(built):
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is not installed')
    if not CHROMIUM.exists(): pytest.skip(f'no Chromium at {CHROMIUM}')
    project, site, real = built
    pages = {p.relative_to(site).as_posix(): p.read_text() for p in site.rglob('*.html') if p.parent.name != 'assets'}
    api_pages = sorted((p for p, t in pages.items() if 'class="api"' in t), key=lambda p: p != 'core.html')
    assert api_pages, f'no page with show_doc output among {sorted(pages)}'
    source = '\n'.join(nb_text(p, 'code') for p in (project/'nbs').rglob('*.ipynb'))
    srv = serve(site)
    base = f'http://127.0.0.1:{srv.server_address[1]}'
    errors = []
    with sync_api.sync_playwright() as pw:
        try: browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROME_ARGS)
        except Exception as e: pytest.skip(f'Chromium does not start under playwright: {e}')
        try:
            page = browser.new_page(viewport={'width': 1280, 'height': 900})
            page.on('console', lambda m: m.type == 'error' and errors.append(f'{page.url}: {m.text}'))
            page.on('pageerror', lambda e: errors.append(f'{page.url}: {e}'))
            page.on('response', lambda r: r.status >= 400 and errors.append(f'{page.url}: {r.status} for {r.url}'))
            # the site must work offline: refuse anything that is not our server
            page.route('**/*', lambda r: r.continue_() if r.request.url.startswith(base) else r.abort())

            page.goto(f'{base}/index.html')
            title = page.locator('h1.title')
            assert title.is_visible() and title.inner_text() == nb_title(project/'nbs'/'index.ipynb')
            links = page.locator('nav.sidebar a')
            assert links.count() >= 2 and links.first.is_visible()
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            # every page at 1280 px: no sideways scrolling (of the page or of a code block), images inside the text column, maths typeset by KaTeX
            problems, typeset = {}, 0
            for name in sorted(pages):
                page.goto(f'{base}/{name}')
                if 'katex.min.js' in pages[name]:
                    page.wait_for_function("() => document.querySelector('main.content .katex')", timeout=15_000)
                r = page.evaluate(PAGE_PROBLEMS)
                typeset += r['katex']
                bad = {k: v for k, v in r.items() if k != 'katex' and v and not (k == 'overflow' and v <= 0)}
                if bad: problems[name] = bad
            assert not problems, problems
            assert typeset > (20 if real else 0), f'only {typeset} formulas typeset'
            page.goto(f'{base}/{api_pages[0]}')
            head = page.locator('.api h2, .api h3, .api h4').first
            assert head.is_visible()
            name = head.inner_text().strip(' ¶').split('.')[-1]
            assert re.search(rf'\b(def|class)\s+{re.escape(name)}\b', source), f'show_doc heading {name!r} is not a real definition'

            plotted = [p for p, t in pages.items() if 'class="plotly-fig"' in t]   # pages with a stored plotly figure
            assert plotted or not real, 'no page of the real site shows a stored plotly figure'
            if plotted:
                page.goto(f'{base}/{plotted[0]}')
                page.wait_for_selector('.js-plotly-plot', timeout=15_000)
                assert page.evaluate("document.querySelector('.js-plotly-plot').data.length") > 0
        finally:
            browser.close()
            srv.shutdown()
    assert not errors, errors
