"""Sphinx configuration of the course website (`make book`; tools/build_book.py stages the pages).

Why plain Sphinx + myst-nb + sphinx-book-theme: Jupyter Book 2 (mystmd) cannot build offline (it fetches
its theme from api.mystmd.org, and that theme hard-codes CDN links for MathJax, require.js and more), and
Material for MkDocs announces its end of life for 2027. This stack builds and serves with no network:
notebooks are rendered from their stored outputs, and every script comes from book/node_modules
(npm, pinned in book/package-lock.json), copied into _static/vendor by tools/build_book.py.
"""
project = "Neurons to Pipelines"
author = "the course authors"
copyright = "the course authors"

extensions = ["myst_nb"]
nb_execution_mode = "off"            # the stored, CI-checked outputs are the page
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
exclude_patterns = ["**/.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "Neurons to Pipelines"
html_theme_options = {
    "use_download_button": True,      # each page's .ipynb, from _sources/ (html_sourcelink_suffix below)
    "use_fullscreen_button": False,
    "show_toc_level": 2,
    "home_page_in_toc": True,
}
html_sourcelink_suffix = ""          # _sources/<page>.ipynb is the notebook itself, ready to download
html_last_updated_fmt = None

# Everything the pages load is local: tools/build_book.py copies it from book/node_modules into
# _static/npm/, laid out as in node_modules
mathjax_path = "npm/mathjax/es5/tex-chtml-full.js"
WIDGETS = "npm/@jupyter-widgets/html-manager/dist/embed-amd.js"
nb_ipywidgets_js = {"npm/requirejs/require.js": {}, WIDGETS: {"data-jupyter-widgets-cdn": "./"}}


def widget_files_from_static(app, pagename, templatename, context, doctree):
    """The widget manager finds its icon fonts next to its require.js module ids, which resolve against
    require's baseUrl (by default the page's own folder, and pages sit at different depths): set baseUrl
    to _static/npm/ relative to this page, and the "CDN" for other widget modules to the same place."""
    from sphinx.builders.html._assets import _JavaScript
    files = context.get("script_files", [])
    npm = context["pathto"]("_static/npm/", 1)
    for i, js in enumerate(files):
        if str(getattr(js, "filename", js)).endswith(WIDGETS):
            files[i] = _JavaScript(js.filename, priority=js.priority,
                                   **dict(js.attributes, **{"data-jupyter-widgets-cdn": npm}))
            files.insert(i, _JavaScript(None, priority=js.priority, body=f'require.config({{baseUrl: "{npm}"}});'))
            break


def setup(app):
    app.connect("html-page-context", widget_files_from_static, priority=900)  # after myst-nb adds the script
