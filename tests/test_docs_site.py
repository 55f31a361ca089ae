"""The documentation site, built once as `make docs` builds it (Sphinx, every warning an error) into
a scratch folder, then opened page by page in a real headless Chromium (Playwright, the harness of
tests/test_report_browser.py): every internal link resolves to a file that exists and, where it
names one, to an anchor on that page; every image loads (naturalWidth > 0); the console shows no
error. Also: the README's own links and images resolve on disk (as on GitHub), and the README
stays a front door (at most 300 lines).

Skipped when the Python package `playwright` or a Chromium is absent (the build and the README's
checks still run). The build runs the gallery's scripts (examples/) into docs/auto_examples/,
the same folder `make docs` writes (gitignored)."""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import OFFLINE_ENV
from test_report_browser import chromium_executable

REPO = Path(__file__).resolve().parents[1]
# Pages Sphinx makes for itself: the index of terms and the search page, whose results load on demand.
GENERATED = {"genindex.html", "search.html"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site's folder (its index.html), built with warnings as errors."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                            "-d", str(out / "doctrees"), "docs", str(out / "html")], cwd=REPO,
                           capture_output=True, text=True, timeout=600,
                           env={**os.environ, **OFFLINE_ENV, "PYTHONPATH": str(REPO)})
    assert built.returncode == 0, built.stderr[-4000:]
    assert "WARNING" not in built.stderr and "ERROR" not in built.stderr, built.stderr[-4000:]
    return out / "html"


@pytest.fixture(scope="module")
def visited(site):
    """{page path: (ids on it, [(link href, resolved URL)], [(image src, loaded)], [console errors])}
    for every HTML page of the site, each opened in Chromium."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set GRADCAM_CHROMIUM)")
    arguments = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    pages = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=arguments)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors = []
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(f"exception: {error}"))
            for path in sorted(site.rglob("*.html")):
                if path.relative_to(site).parts[0] in ("_static", "_sources", "_images", "_downloads"):
                    continue
                errors.clear()
                page.goto(path.as_uri(), wait_until="load")
                ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
                ids |= set(page.eval_on_selector_all("a[name]", "els => els.map(e => e.name)"))
                links = page.eval_on_selector_all(
                    "a[href]", "els => els.map(a => [a.getAttribute('href'), a.href])")
                images = page.eval_on_selector_all(
                    "img", "imgs => imgs.map(i => [i.src, i.complete && i.naturalWidth > 0])")
                pages[path] = (ids, links, images, list(errors))
        finally:
            browser.close()
    return pages


@pytest.mark.slow  # the build (~30 s, the gallery's scripts run) and ~20 pages in Chromium
def test_the_site_has_every_page(site):
    names = {p.name for p in site.glob("*.html")}
    for page in ("index", "getting-started", "using-methods", "methods", "models", "targets", "report",
                 "concepts", "scaling", "reliability", "compat", "measuring", "evaluation", "benchmarks",
                 "api", "cli", "contributing"):
        assert f"{page}.html" in names, page
    cli = (site / "cli.html").read_text()
    for command in ("gradcam-gradcam", "gradcam-eval", "gradcam-compare", "gradcam-report"):
        assert f'id="{command}"' in cli, command  # sphinx-click: a section per subcommand
    assert "--method" in cli and "--target" in cli
    api = (site / "api.html").read_text()
    assert 'id="gradcam_cli.api.Explainer"' in api and 'id="gradcam_cli.api.load_model"' in api
    assert list((site / "auto_examples").glob("plot_*.html")), "the gallery was not built"


@pytest.mark.slow  # the build (~30 s, the gallery's scripts run) and ~20 pages in Chromium
def test_every_internal_link_resolves(visited):
    checked, problems = 0, []
    for path, (_, links, _, _) in visited.items():
        for href, url in links:
            parts = urlsplit(url)
            if parts.scheme != "file":
                continue  # an external site: not followed (the build is offline)
            target = Path(unquote(parts.path))
            checked += 1
            if not target.exists():
                problems.append(f"{path.name}: {href} -> {target} does not exist")
            elif parts.fragment and target.suffix == ".html" and target.name not in GENERATED:
                ids = visited[target][0] if target in visited else set()
                if unquote(parts.fragment) not in ids:
                    problems.append(f"{path.name}: {href}: no anchor #{parts.fragment} on {target.name}")
    assert checked >= 200, checked
    assert not problems, "\n".join(problems)


@pytest.mark.slow  # the build (~30 s, the gallery's scripts run) and ~20 pages in Chromium
def test_every_image_loads(visited):
    images = [(path.name, src, loaded) for path, (_, _, shown, _) in visited.items() for src, loaded in shown]
    assert len({src for _, src, _ in images if "/_images/" in src}) >= 3  # the pages' own pictures, not only icons
    broken = [(name, src) for name, src, loaded in images if not loaded]
    assert not broken, broken


@pytest.mark.slow  # the build (~30 s, the gallery's scripts run) and ~20 pages in Chromium
def test_no_console_errors(visited):
    errors = {path.name: messages for path, (_, _, _, messages) in visited.items() if messages}
    assert not errors, errors


def test_the_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 300
    assert "docs/images/gallery/overview.png" in text.split("## ", 1)[0], "the gallery picture opens the README"
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        if not (REPO / file).exists():
            missing.append(target)
        elif anchor and file.endswith(".md"):
            headings = re.findall(r"^#+ (.+)$", (REPO / file).read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
            if anchor not in slugs:
                missing.append(target)
    assert not missing, missing
