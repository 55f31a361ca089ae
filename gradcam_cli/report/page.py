"""The page: gradcam_cli/data/report.html with the title, the data and a Content-Security-Policy
filled in.

The data goes into a <script type="application/json"> block as JSON in which <, > and & are
\\u escapes (and everything outside ASCII too): no file name or label can close the block or
open a tag. The page's own script and style are allowed by their SHA-256 hashes and nothing
else is (no inline handler, no other script, no network), so even an injected tag could not run.
"""

import base64
import hashlib
import html
import json
import re
from importlib import resources

_PLACEHOLDER = re.compile(r"\{\{(title|csp|data)\}\}")
_SCRIPT = re.compile(r'<script id="report-app">(.*?)</script>', re.S)
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def template():
    return (resources.files("gradcam_cli") / "data" / "report.html").read_text(encoding="utf-8")


def embed_json(data):
    """`data` as JSON safe inside <script type="application/json">...</script>."""
    text = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _source_hash(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def render_page(data, title):
    """The page's HTML text."""
    page = template()
    style, script = _source_hash(_STYLE.search(page).group(1)), _source_hash(_SCRIPT.search(page).group(1))
    policy = (f"default-src 'none'; img-src 'self' file: data:; style-src {style}; script-src {script}; "
              "base-uri 'none'; form-action 'none'")
    values = {"title": html.escape(title).encode("ascii", "xmlcharrefreplace").decode("ascii"), "csp": policy,
              "data": embed_json(data)}
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], page)  # one pass: values are not rescanned
