#!/usr/bin/env python
"""Build the offline docs site and README.md from the notebooks, without Quarto.

    python tools/build_docs.py [--out DIR] [--no-readme] [--force] [--workers N]

1. Processes `nbs/` into `_proc/` the way `nbdev_proc_nbs` does (frontmatter, `show_doc` cells
   executed, hidden cells dropped). We call `nbdev.serve.proc_nbs`, the step `nbdev_proc_nbs`
   runs, because the CLI first tries to download and install Quarto.
2. Renders every processed notebook into a static site (default `_site/`): one page per notebook,
   a sidebar in notebook order, stored outputs, interactive plotly figures using a local
   `plotly.min.js`; no CDN, so the site works offline.
3. Writes README.md from `_proc/index.ipynb` with nbconvert's MarkdownExporter.
"""
import argparse, html, json, os, re, shutil, sys
from itertools import count
from pathlib import Path
from urllib.parse import unquote

import nbformat, plotly, yaml
from nbconvert import MarkdownExporter
from nbconvert.filters import strip_ansi
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbconvert.preprocessors import TagRemovePreprocessor
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

PLOTLY = 'application/vnd.plotly.v1+json'
KATEX = Path(__file__).resolve().parent/'katex'   # KaTeX 0.19.1 from npm (MIT), woff2 fonts only: maths offline
MATH = re.compile(r'\$\$.+?\$\$|(?<![\\$\w])\$[^\s$](?:[^$\n]*?[^\s$\\])?\$(?![\w$])|\\\(.+?\\\)', re.S)
DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+):?\s*(.*?)\s*$')
FRONTMATTER = re.compile(r'^\s*---\s*\n(.*?)\n---', re.S)
_fig_ids = count()

def directives(source):
    "The `#| key: value` directives of a code cell, as a dict."
    return {m[1]: m[2] for line in source.splitlines() if (m := DIRECTIVE.match(line))}

def frontmatter(nb, stem):
    "Title, description and output file: from nbdev's front matter, else `# Title` and `> description`."
    fm = {}
    if nb.cells and nb.cells[0].cell_type == 'raw' and (m := FRONTMATTER.match(nb.cells[0].source)):
        fm = yaml.safe_load(m[1]) or {}
    md = '\n'.join(c.source for c in nb.cells if c.cell_type == 'markdown')
    title = fm.get('title') or ((m := re.search(r'^#\s+(.+)$', md, re.M)) and m[1].strip()) or stem
    desc = fm.get('description') or ((m := re.search(r'^>\s*(.+)$', md, re.M)) and m[1].strip()) or ''
    return str(title), str(desc), fm.get('output-file', f'{stem}.html')

def is_plotly_loader(out):
    "Is `out` plotly's notebook-mode loader (an inline copy of plotly.js we do not need)?"
    data = out.get('data', {})
    return PLOTLY not in data and 'window.PlotlyConfig' in data.get('text/html', '')

def clean_nb(nb):
    "Drop front matter and hidden cells, strip directive lines, tag cells whose source is hidden."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'raw' and FRONTMATTER.match(c.source): continue
        if c.cell_type == 'code':
            d = directives(c.source)
            if 'hide' in d or d.get('include') == 'false': continue
            c.source = '\n'.join(l for l in c.source.splitlines() if not DIRECTIVE.match(l)).strip()
            c.metadata['api'] = 'show_doc(' in c.source
            if d.get('echo') == 'false' or not c.source: c.metadata.setdefault('tags', []).append('remove_input')
            c.outputs = [] if d.get('output') == 'false' else [o for o in c.outputs if not is_plotly_loader(o)]
            if not c.source and not c.outputs: continue
        cells.append(c)
    nb.cells = cells
    return nb

def md2html(source, attachments=None):
    "Markdown to HTML with nbconvert's mistune renderer, inlining `attachment:` images."
    for name, data in (attachments or {}).items():
        mime, b64 = next(iter(data.items()))
        source = source.replace(f'attachment:{name}', f'data:{mime};base64,{b64}')
    return quarto_ids(markdown2html_mistune(attr_links(source)))

ATTR_LINK = re.compile(r'\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}')

def attr_links(source):
    "Pandoc's `[text](url){target=... style=...}` links (nbdev's `show_doc` source links) as plain HTML links."
    def link(m):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m[3]))
        extra = ''.join(f' {k}="{html.escape(v)}"' for k, v in attrs.items() if k in ('target', 'title'))
        cls = ' class="source-link"' if m[1] == 'source' else ''
        return f'<a href="{html.escape(m[2])}"{cls}{extra}>{m[1]}</a>'
    return ATTR_LINK.sub(link, source)

def quarto_ids(body):
    "Lowercase (and percent-decode) heading ids and their anchors, as Quarto does, so nbdev's doc links (`page.html#samplerconfig`) hit them."
    fix = lambda m: m[1] + unquote(m[2]).lower() + '"'   # `%CF%86-explorer` -> `φ-explorer`
    return re.sub(r'(<a class="anchor-link" href="#)([^"]+)"', fix, re.sub(r'(<h[1-6] id=")([^"]+)"', fix, body))

def code2html(source, lang='python'):
    "Syntax-highlighted HTML for a code cell's source."
    try: lexer = get_lexer_by_name(lang)
    except ClassNotFound: lexer = get_lexer_by_name('text')
    return f'<div class="sourceCode">{highlight(source, lexer, HtmlFormatter())}</div>'

def plotly_div(fig):
    "A div plus the `Plotly.newPlot` call drawing a stored plotly figure."
    i = f'fig-{next(_fig_ids)}'
    spec = dict(data=fig.get('data', []), layout=fig.get('layout', {}), config={'responsive': True, **fig.get('config', {})})
    js = json.dumps(spec).replace('</', '<\\/')
    return (f'<div id="{i}" class="plotly-fig"></div>\n'
            f'<script>(function(f){{Plotly.newPlot("{i}", f.data, f.layout, f.config);}})({js});</script>')

def output2html(out, api=False):
    "One stored output as HTML: plotly figure, html, image, markdown (API docs) or text."
    if out.output_type == 'stream': return f'<pre class="stream">{html.escape(out.text)}</pre>'
    if out.output_type == 'error': return f'<pre class="error">{html.escape(strip_ansi(chr(10).join(out.traceback)))}</pre>'
    d = out.get('data', {})
    if PLOTLY in d: return plotly_div(d[PLOTLY])
    if 'text/html' in d: return f'<div class="html-output">{d["text/html"]}</div>'
    if 'image/svg+xml' in d: return d['image/svg+xml']
    for mime in ('image/png', 'image/jpeg', 'image/gif'):
        if mime in d: return f'<img src="data:{mime};base64,{d[mime].strip()}" alt="output">'
    if 'text/markdown' in d: return f'<div class="{"api" if api else "markdown-output"}">{md2html(d["text/markdown"])}</div>'
    if 'text/plain' in d: return f'<pre>{html.escape(d["text/plain"])}</pre>'
    return ''

def cell2html(cell, lang='python'):
    "A markdown or code cell (source unless hidden, then outputs) as HTML."
    if cell.cell_type == 'markdown': return f'<div class="cell markdown">{md2html(cell.source, cell.get("attachments"))}</div>'
    if cell.cell_type != 'code': return ''
    src = '' if 'remove_input' in cell.metadata.get('tags', []) else code2html(cell.source, cell.metadata.get('language', lang))
    outs = ''.join(f'<div class="cell-output">{output2html(o, cell.metadata.get("api"))}</div>' for o in cell.outputs)
    return f'<div class="cell">{src}{outs}</div>'

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {site}</title><meta name="description" content="{desc}"><link rel="icon" href="data:,">
<link rel="stylesheet" href="{root}assets/site.css">{css}{js}</head>
<body><header class="navbar"><a class="brand" href="{root}index.html">{site}</a><a class="github" href="{git_url}">GitHub</a></header>
<div class="layout"><nav class="sidebar"><ul>{nav}</ul></nav>
<main class="content"><header class="page-header"><h1 class="title">{title}</h1><div class="description">{desc}</div></header>
{body}</main><aside class="toc">{toc}</aside></div></body></html>
"""

def toc_html(body):
    "An 'On this page' list from the page's h2/h3 headings."
    items = [f'<li class="toc-{h}"><a href="#{i}">{re.sub(r"<[^>]+>", "", t)}</a></li>'
             for h, i, t in re.findall(r'<(h[23]) id="([^"]+)">(.*?)<a class="anchor-link"', body)]
    return f'<h2>On this page</h2><ul>{"".join(items)}</ul>' if items else ''

def katex_tags(root):
    "KaTeX's stylesheet and scripts, served from the site, rendering `$…$`, `$$…$$`, `\\(…\\)` and `\\[…\\]` in the page."
    opts = ("{delimiters: [{left: '$$', right: '$$', display: true}, {left: '\\\\[', right: '\\\\]', display: true}, "
            "{left: '$', right: '$', display: false}, {left: '\\\\(', right: '\\\\)', display: false}], throwOnError: false}")
    return (f'<link rel="stylesheet" href="{root}assets/katex/katex.min.css">'
            f'<script defer src="{root}assets/katex/katex.min.js"></script>'
            f'<script defer src="{root}assets/katex/auto-render.min.js" '
            f'onload="renderMathInElement(document.querySelector(\'main.content\'), {opts})"></script>')

def has_math(body):
    "Does the page's text (outside code blocks) hold TeX maths?"
    return bool(MATH.search(re.sub(r'<(pre|code|script)\b.*?</\1>', '', body, flags=re.S)))

def render_page(nb, page, pages, cfg, has_css):
    "The full HTML of one notebook's page, with links relative to the page's folder."
    root = '../' * page.count('/')
    body = '\n'.join(cell2html(c, nb.metadata.get('kernelspec', {}).get('language', 'python')) for c in nb.cells)
    body = body.replace(f'{cfg.doc_host}{cfg.doc_baseurl}/', root)  # nbdev's doc links, made local
    nav = ''.join(f'<li><a href="{root}{p}"{" class=active" if p == page else ""}>{html.escape(t)}</a></li>' for p, t in pages)
    title, desc = (html.escape(s) for s in nb.metadata['page'])
    css = f'<link rel="stylesheet" href="{root}styles.css">' if has_css else ''
    js = f'<script src="{root}assets/plotly.min.js"></script>' if PLOTLY in body or 'Plotly.newPlot' in body else ''
    return PAGE.format(title=title, desc=desc, site=html.escape(cfg.title), root=root, git_url=cfg.git_url, nav=nav,
                       body=body, toc=toc_html(body), css=css, js=js + (katex_tags(root) if has_math(body) else ''))

def proc_notebooks(proc, nbs_path):
    "The processed notebooks whose source still exists in `nbs/`, index first, then in file order."
    nbs = [p for p in proc.rglob('*.ipynb') if (nbs_path/p.relative_to(proc)).exists()
           and not any(s.startswith(('.', '_')) for s in p.relative_to(proc).parts)]
    return sorted(nbs, key=lambda p: (p.relative_to(proc).parent.parts, p.stem != 'index', p.name))

def copy_assets(proc, out):
    "Copy non-notebook files (images, example reports, styles.css) and a local plotly.min.js into the site."
    for f in proc.rglob('*'):
        rel = f.relative_to(proc)
        if f.is_file() and f.suffix not in ('.ipynb', '.yml', '.yaml', '.qmd') and not any(s.startswith(('.', '_')) for s in rel.parts):
            (out/rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out/rel)
    (out/'assets').mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(plotly.__file__).parent/'package_data'/'plotly.min.js', out/'assets'/'plotly.min.js')
    shutil.copytree(KATEX, out/'assets'/'katex', ignore=shutil.ignore_patterns('VERSION'))
    (out/'assets'/'site.css').write_text(SITE_CSS + HtmlFormatter().get_style_defs('.highlight'))

def build_site(proc, out, cfg):
    "Render every processed notebook in `proc` into a static site in `out`; return the pages written."
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    copy_assets(proc, out)
    nbs = []
    for p in proc_notebooks(proc, cfg.nbs_path):
        nb = nbformat.read(p, as_version=4)
        title, desc, fname = frontmatter(nb, p.stem)
        nb.metadata['page'] = (title, desc)
        nbs.append((p.relative_to(proc).parent.joinpath(fname).as_posix(), clean_nb(nb)))
    pages = [(page, nb.metadata['page'][0]) for page, nb in nbs]
    for page, nb in nbs:
        (out/page).parent.mkdir(parents=True, exist_ok=True)
        (out/page).write_text(render_page(nb, page, pages, cfg, (out/'styles.css').exists()), encoding='utf-8')
    return [p for p, _ in pages]

def repo_path(src, prefix):
    "A relative link in `nbs/` rewritten to work from the repo root."
    return src if re.match(r'^([a-z]+:|/|#)', src) else f'{prefix}/{src}'

def write_readme(proc, cfg):
    "Write README.md from `_proc/index.ipynb` with nbconvert's MarkdownExporter."
    nb = nbformat.read(proc/'index.ipynb', as_version=4)
    title, desc, _ = frontmatter(nb, cfg.lib_name)
    nb, prefix = clean_nb(nb), cfg.nbs_path.relative_to(cfg.config_path).as_posix()
    for c in nb.cells:
        if c.cell_type == 'markdown':  # images and links to files in nbs/ (e.g. nbs/assets/overview.png)
            c.source = re.sub(r'(!?\[[^\]]*\]\()([^)\s]+)', lambda m: m[1] + repo_path(m[2], prefix), c.source)
            c.source = re.sub(r'(<img[^>]*\bsrc=")([^"]+)', lambda m: m[1] + repo_path(m[2], prefix), c.source)
        if c.cell_type == 'code': c.outputs = [o for o in c.outputs if PLOTLY not in o.get('data', {})]  # GitHub can't show them
    nb.metadata.setdefault('language_info', {'name': nb.metadata.get('kernelspec', {}).get('language', 'python')})
    exp = MarkdownExporter()
    exp.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}), enabled=True)
    body, res = exp.from_notebook_node(nb, resources={'output_files_dir': 'README_files'})
    for name, data in res.get('outputs', {}).items():  # output images, next to README.md
        (cfg.config_path/name).parent.mkdir(parents=True, exist_ok=True)
        (cfg.config_path/name).write_bytes(data)
    head = f'# {title}\n\n' + (f'> {desc}\n\n' if desc else '')
    (cfg.config_path/'README.md').write_text(head + body.strip() + '\n', encoding='utf-8')

SITE_CSS = """
:root { --accent: #2780e3; --muted: #6c757d; --border: #e5e7eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #212529; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.navbar { display: flex; justify-content: space-between; align-items: center; padding: .6rem 1.5rem; background: var(--accent); }
.navbar a { color: #fff; font-weight: 600; } .navbar .brand { font-size: 1.2rem; }
.layout { display: grid; grid-template-columns: 14rem minmax(0, 1fr) 12rem; gap: 1.5rem; max-width: 110rem; margin: 0 auto; padding: 1.5rem; }
.sidebar ul, .toc ul { list-style: none; margin: 0; padding: 0; }
.sidebar { position: sticky; top: 1rem; align-self: start; border-right: 1px solid var(--border); padding-right: 1rem; }
.sidebar li a { display: block; padding: .25rem .5rem; border-radius: 4px; color: #343a40; }
.sidebar li a.active { background: #e7f1fc; color: var(--accent); font-weight: 600; }
.toc { position: sticky; top: 1rem; align-self: start; font-size: .85rem; }
.toc h2 { font-size: .9rem; color: var(--muted); } .toc-h3 { padding-left: .8rem; }
.page-header { margin-bottom: 1.5rem; } .title { margin: 0; }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .88rem; }
.highlight pre, .cell-output pre { padding: .6rem .8rem; overflow-x: auto; margin: 0 0 1rem; }
.highlight pre { white-space: pre-wrap; overflow-wrap: anywhere; }   /* long source lines wrap in the column instead of scrolling sideways */
pre.stream { white-space: pre-wrap; word-break: break-word; }
.plotly-fig { max-width: 100%; overflow-x: auto; }
.highlight { background: #f8f9fa; border-radius: 4px; }
.cell-output { overflow-x: auto; } .content img, .content svg, .content video { max-width: 100%; height: auto; }
.katex-display { overflow-x: auto; overflow-y: hidden; padding: .2rem 0; }
a.source-link { float: right; font-size: smaller; }
.error { color: #b00020; }
.api { border-top: 1px solid var(--border); padding-top: .5rem; } .api hr { display: none; }
.api h2, .api h3, .api h4 { font-family: ui-monospace, Menlo, Consolas, monospace; }
table { border-collapse: collapse; margin: .5rem 0; } th, td { border: 1px solid var(--border); padding: .3rem .6rem; }
.anchor-link { visibility: hidden; margin-left: .3rem; } h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link, h4:hover .anchor-link { visibility: visible; }
@media (max-width: 60rem) { .layout { grid-template-columns: 1fr; } .toc { display: none; } .sidebar { position: static; border: 0; } }
"""

def strict_doc_eval():
    "Make nbdev's docs processing run export, show_doc and pure-import cells only, never test cells that also import."
    import ast
    import nbdev.processors as P
    if getattr(P._do_eval, 'strict', False): return
    loose = P._do_eval
    def _do_eval(cell):
        if not loose(cell): return None
        if cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}: return True
        trees = cell.parsed_()
        if P._show_docs(trees): return True
        return all(isinstance(n, (ast.Import, ast.ImportFrom)) for n in trees)
    _do_eval.strict = True
    P._do_eval = _do_eval

def summarise_nbdev_warnings():
    "Print each warning nbdev raises while processing a notebook as one line (notebook: first line of the message, first line of the cell), not the whole cell."
    import warnings
    import nbdev.serve_drv as drv
    if getattr(drv.main, 'summarised', False): return
    process = drv.main
    def main(o):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter('always')
            try: return process(o)
            finally:
                for w in seen: print(f'nbdev warning: {warning_line(Path(o[0]).name, str(w.message))}', file=sys.stderr)
    main.summarised = True
    drv.main = main   # proc_nbs looks it up at call time; in-process only (--workers 0, the default)

def warning_line(name, message):
    "`name: first line of message`, with the first code line of the cell nbdev quotes between `---` lines."
    head, *rest = message.strip().split('\n---\n', 1)
    cell = next((l.strip() for l in rest[0].splitlines() if l.strip()), '') if rest else ''
    return f'{name}: {head.splitlines()[0]}' + (f' (cell: {cell[:80]})' if cell else '')

def main(argv=None):
    "Process the notebooks, build the site and (unless `--no-readme`) README.md."
    ap = argparse.ArgumentParser(description='Build the offline docs site and README.md without Quarto.')
    ap.add_argument('--out', help='folder for the site (default: _site in the repo root)')
    ap.add_argument('--no-readme', action='store_true', help='do not write README.md')
    ap.add_argument('--force', action='store_true', help='reprocess every notebook, ignoring the _proc cache')
    ap.add_argument('--workers', type=int, default=0, help='processes for nbdev_proc_nbs (0: in this process, which strict_doc_eval needs)')
    args = ap.parse_args(argv)
    from nbdev.config import get_config
    from nbdev.serve import proc_nbs
    cfg = get_config()
    sys.path.insert(0, str(cfg.config_path))  # notebooks import the library from the repo, installed or not
    strict_doc_eval()
    summarise_nbdev_warnings()
    proc = proc_nbs(force=args.force, n_workers=args.workers)
    out = Path(args.out).resolve() if args.out else cfg.config_path/'_site'
    pages = build_site(proc, out, cfg)
    print(f'Wrote {len(pages)} pages to {out}')
    if not args.no_readme and (proc/'index.ipynb').exists():
        write_readme(proc, cfg)
        print(f"Wrote {cfg.config_path/'README.md'}")

if __name__ == '__main__': main()
