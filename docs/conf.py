"""Sphinx configuration: the Markdown pages of docs/ (MyST) and the API reference
generated from the docstrings (autodoc with napoleon's Google style).

    make docs        # docs/_build/html/index.html; warnings are errors
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import accjax  # noqa: E402

project = "accjax"
release = version = accjax.__version__
copyright = "the accjax authors, Apache-2.0"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "example/*", "grid/*"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures and Args: sections say it
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
html_static_path = []


_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def _markdown_docstrings(app, what, name, obj, options, lines):
    """The docstrings are written for a terminal, Markdown-style: `x` is code
    (made a literal, which also keeps napoleon from splitting it at a colon),
    and |S| is a set's size (not a substitution: every other | is escaped)."""

    def line(text):
        parts = _CODE.split(text)  # even: prose, odd: code
        return "".join(
            f"``{p}``" if i % 2 else p.replace("|", r"\|") for i, p in enumerate(parts)
        )

    lines[:] = [line(text) for text in lines]


def setup(app):
    # before napoleon (priority 500) reads the sections
    app.connect("autodoc-process-docstring", _markdown_docstrings, priority=400)
