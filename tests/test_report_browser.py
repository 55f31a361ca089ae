"""The report page in a real headless Chromium, driven by Playwright: it loads without console
errors, shows the expected cards, sorts and filters, keeps hostile names as text, shows the
detail view and the other sections, draws something, and stays quick with 10,000 maps; a
volume's slice scrubber and a clip's frame player show the tile asked for (checked by its
pixels), under the page's Content-Security-Policy.

Skipped when the Python package `playwright` or a Chromium is absent. The browser is the
system's (Debian: apt-get install chromium), never Playwright's download; GRADCAM_CHROMIUM
names another executable.
"""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_report import (
    HOSTILE_LABEL,
    HOSTILE_NAME,
    compare_record,
    eval_record,
    image_record,
    make_run,
    map_record,
    picture,
)
from test_report_volumes import TILE_COLOURS, clip_record, volume_record

from gradcam_cli.report import write_report

sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed")

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def chromium_executable():
    named = os.environ.get("GRADCAM_CHROMIUM")
    if named:
        return named if os.path.isfile(named) else None
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


@pytest.fixture(scope="module")
def browser():
    executable = chromium_executable()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set GRADCAM_CHROMIUM)")
    arguments = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=executable, args=arguments)
        except sync_api.Error as error:
            pytest.skip(f"Chromium at {executable} does not start: {str(error).splitlines()[0]}")
        yield chromium
        chromium.close()


class Page:
    """A report opened in a fresh page, with the console's errors and the page's exceptions.
    Conditions to wait for are functions ("() => ..."): a bare expression would be eval'd, which
    the page's Content-Security-Policy refuses."""

    def __init__(self, browser, index, viewport=(1280, 900)):
        self.errors = []
        self.page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(f"exception: {error}"))
        self.page.goto(index.as_uri())
        self.page.wait_for_selector("body[data-ready='1']", timeout=20_000)

    def cards(self):
        return self.page.locator("#grid .card")

    def scores(self):
        return [float(s) for s in self.page.eval_on_selector_all("#grid .card", "cs => cs.map(c => c.dataset.score)")]

    def choose(self, select, value):
        self.page.select_option(select, value)

    def images_loaded(self, selector):
        return self.page.eval_on_selector_all(
            selector, "images => images.map(i => i.complete && i.naturalWidth > 0)")

    def wait_until_loaded(self, selector):
        self.page.wait_for_function(
            "(s) => Array.from(document.querySelectorAll(s)).every(i => i.complete && i.naturalWidth > 0)",
            arg=selector)

    def close(self):
        self.page.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A guided image first, then a run of 7 images (8 maps: image 1 has two; images 2 and 4
    all-zero; the last named HOSTILE_NAME with the label HOSTILE_LABEL), a failure, two compare
    figures and an eval report."""
    folder = tmp_path_factory.mktemp("browser")
    guided = map_record(folder / "out", "g.png", "class 1", 1, 0.75, method="guided",
                        kinds=("heatmap", "overlay", "gradient"), size=(120, 90))
    records = [image_record(picture(folder / "images" / "g.png", (120, 90)), [guided], method="guided")]
    records += make_run(folder, count=7, zero=(2, 4), size=(120, 90))
    records += [compare_record("a.png", picture(folder / "c" / "a.png.compare.png", (300, 100))),
                compare_record("b.png", picture(folder / "c" / "b.png.compare.png", (300, 100)))]
    records[-1]["outputs"]["layers"] = str(picture(folder / "c" / "b.png.layers.png", (250, 90)))  # --layers
    records.append(eval_record(folder / "e"))
    records[-1]["outputs"].pop("randomisation")  # no missing figure: every image on the page loads
    written = write_report(records, folder / "report", title="browser test")
    assert (written.maps, written.failures, written.missing) == (9, 1, 0)
    return written.index


@pytest.fixture
def page(browser, report):
    opened = Page(browser, report)
    yield opened
    opened.close()


def test_loads_without_errors_and_shows_every_card(page):
    assert page.cards().count() == 9
    assert page.page.inner_text("#shown") == "9 maps"
    assert page.page.title() == "browser test"
    page.wait_until_loaded("#grid img")
    assert page.images_loaded("#grid img") == [True] * 9
    assert page.errors == []


def test_sorting_by_score_reorders_the_grid(page):
    before = page.scores()
    page.choose("#sort", "score-desc")
    after = page.scores()
    assert after == sorted(before, reverse=True) and after != before
    page.choose("#sort", "score-asc")
    assert page.scores() == sorted(before)
    page.choose("#sort", "order")
    assert page.scores() == before
    assert page.errors == []


def test_filters(page):
    page.choose("#filter-zero", "only")
    zero = page.page.eval_on_selector_all("#grid .card", "cs => cs.map(c => c.dataset.zero)")
    assert zero == ["1", "1"] and page.page.inner_text("#shown") == "2 of 9 maps"
    assert page.page.locator("#grid .card .badge").count() == 2
    page.choose("#filter-zero", "hide")
    assert page.cards().count() == 7
    page.choose("#filter-zero", "")
    page.choose("#filter-class", "class 2 (2)")
    labels = page.page.eval_on_selector_all("#grid .card p:nth-of-type(2)", "ps => ps.map(p => p.textContent)")
    assert labels == ["class 2 (2) · gradcam"] * 3
    page.choose("#filter-class", "")
    page.page.fill("#filter-score", "0")
    assert page.scores() and min(page.scores()) >= 0 and page.cards().count() < 9
    page.page.fill("#filter-score", "")
    page.page.fill("#filter-name", "img3")
    assert page.cards().count() == 1
    page.page.fill("#filter-name", "")
    page.choose("#filter-method", "guided")
    assert page.cards().count() == 1 and page.page.inner_text("#shown") == "1 of 9 maps"
    page.cards().first.click()
    captions = page.page.eval_on_selector_all("#detail-figures figcaption", "cs => cs.map(c => c.textContent)")
    assert captions == ["original", "heatmap", "overlay", "gradient"]
    assert page.errors == []


def test_hostile_name_renders_as_text(page):
    assert page.page.evaluate("typeof window.__pwned") == "undefined"
    assert page.page.locator("script").count() == 2
    assert page.page.locator("[onerror]").count() == 0
    names = page.page.eval_on_selector_all("#grid .card .name", "ns => ns.map(n => n.textContent)")
    assert names[-1] == HOSTILE_NAME
    texts = page.page.eval_on_selector_all("#grid .card p:nth-of-type(2)", "ps => ps.map(p => p.textContent)")
    assert texts[-1] == f"{HOSTILE_LABEL} (0) · gradcam"
    page.choose("#filter-class", f"{HOSTILE_LABEL} (0)")
    assert page.cards().count() == 1
    page.cards().first.click()
    assert page.page.inner_text("#detail-name").endswith(HOSTILE_NAME)
    page.wait_until_loaded("#detail-figures img")  # the file with that name, found by its quoted path
    assert page.images_loaded("#detail-figures img") == [True] * 3
    assert page.page.evaluate("typeof window.__pwned") == "undefined" and page.errors == []


def test_detail_view(page):
    page.cards().nth(2).click()
    assert page.page.is_visible("#detail")
    captions = page.page.eval_on_selector_all("#detail-figures figcaption", "cs => cs.map(c => c.textContent)")
    assert captions == ["original", "heatmap", "overlay"]
    page.wait_until_loaded("#detail-figures img")
    predictions = page.page.locator("#detail-tables .table").first
    assert predictions.locator("tbody tr").count() == 5
    assert predictions.locator("tbody tr").first.inner_text().split("\t") == ["0", "class 0", "0.5"]
    page.page.keyboard.press("ArrowRight")
    assert page.page.inner_text("#detail-name").endswith("img1.png")  # its second map
    page.page.keyboard.press("Escape")
    assert not page.page.is_visible("#detail")
    assert page.errors == []


def test_failures_compare_and_eval_sections(page):
    assert page.page.inner_text("#failure-list").strip().endswith("broken.png: cannot decode: not an image file")
    page.page.locator("#eval").scroll_into_view_if_needed()
    page.wait_until_loaded("#compare img, #eval img")
    assert page.page.locator("#compare .compare-item").count() == 2
    assert page.page.locator("#eval table").count() == 3
    assert "deletion and insertion curves" in page.page.inner_text("#eval")
    # the charts: the eval table's bars and compare's layers plot, shown and loaded under the page's CSP
    assert page.page.locator("#eval img[src$='eval.bars.png']").count() == 1
    assert page.page.locator("#compare figure img[src$='b.png.layers.png']").count() == 1
    assert "where each layer's map peaks" in page.page.inner_text("#compare")
    assert all(page.images_loaded("#compare img, #eval img")) and len(page.images_loaded("#eval img")) == 2
    toc = page.page.eval_on_selector_all("#toc a", "links => links.map(a => a.textContent)")
    assert toc == ["maps (9)", "failures (1)", "comparisons (2)", "evaluation (1)"]
    assert page.errors == []


def test_screenshot_is_not_blank(page, tmp_path):
    path = tmp_path / "report.png"
    page.page.screenshot(path=str(path))
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    not_white = (pixels < 235).any(axis=2).mean()
    assert pixels.std() > 20 and not_white > 0.15, (pixels.std(), not_white)


def test_ten_thousand_maps_stay_responsive(browser, tmp_path):
    """10,000 maps (of 25 distinct pictures): the page renders a first chunk, not all of them,
    quickly; scrolling renders more; a sort over all of them is quick."""
    source = picture(tmp_path / "a.png", (120, 90))
    entries = [map_record(tmp_path / "out", f"p{k}.png", f"class {k % 4}", k % 4, 0.0, size=(120, 90), seed=k)
               for k in range(25)]
    rng = np.random.default_rng(0)
    records = []
    for i in range(10_000):
        entry = dict(entries[i % 25], score=float(rng.normal()))
        records.append(image_record(f"{tmp_path}/a.png" if i else source, [entry]))
    index = write_report(records, tmp_path / "report").index
    assert index.stat().st_size < 8_000_000
    started = time.perf_counter()
    page = Page(browser, index)
    opened = time.perf_counter() - started
    try:
        assert page.page.inner_text("#shown") == "10000 maps"
        first = page.cards().count()
        assert 0 < first <= 480, first
        assert opened < 10, opened
        page.page.mouse.wheel(0, 40_000)
        page.page.wait_for_function(f"() => document.querySelectorAll('#grid .card').length > {first}")
        started = time.perf_counter()
        page.choose("#sort", "score-desc")
        sorting = time.perf_counter() - started
        scores = page.scores()
        assert scores == sorted(scores, reverse=True) and len(scores) <= 480
        assert sorting < 3, sorting
        assert page.errors == []
    finally:
        page.close()


def test_policy_blocks_injected_handlers(page):
    """Defence in depth: were markup ever injected, the page's Content-Security-Policy (its own
    script's hash only) would keep it from running."""
    page.page.evaluate("""document.body.insertAdjacentHTML('beforeend',
        '<img id="injected" src="data:," onerror="window.__pwned = 3">')""")
    page.page.wait_for_function("() => document.getElementById('injected').complete")
    page.page.wait_for_timeout(200)
    assert page.page.evaluate("typeof window.__pwned") == "undefined"
    assert any("Content Security Policy" in error for error in page.errors), page.errors


# --- volumes and clips: the slice scrubber and the frame player -----------------------------------


@pytest.fixture(scope="module")
def volume_report(tmp_path_factory):
    """A volume (7 slices, 3 a row, 20x30 tiles, opening at tile 3), a clip (5 frames at 8 fps, 4 a
    row, 24x32 tiles, opening at its peak, the last) and an image, in that order."""
    folder = tmp_path_factory.mktemp("volumes")
    records = [volume_record(folder), clip_record(folder, fps=8.0)]
    records.append(image_record(picture(folder / "images" / "flat.png"), [map_record(folder / "out", "flat.png",
                                                                                         "class 1", 1, 0.5)]))
    written = write_report(records, folder / "report")
    assert (written.maps, written.missing) == (3, 0)
    return written.index


def screenshots_folder(tmp_path):
    """Where the viewers' screenshots go: GRADCAM_SCREENSHOTS (to look at them), else tmp_path."""
    named = os.environ.get("GRADCAM_SCREENSHOTS")
    folder = Path(named) if named else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def tile_shown(page, path):
    """The viewer's canvas as the screen shows it, saved at `path`: its pixels (H, W, 3)."""
    page.page.locator(".viewer canvas").screenshot(path=str(path))
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int32)


def assert_shows(pixels, colour):
    """The canvas shows one flat tile of `colour`: at the centre and near each corner (a crop off by
    part of a tile would bring in a neighbour's colour or the black beyond the sheet)."""
    h, w = pixels.shape[:2]
    for y, x in ((h // 2, w // 2), (4, 4), (4, w - 5), (h - 5, 4), (h - 5, w - 5)):
        assert np.abs(pixels[y, x] - colour).max() <= 3, ((y, x), pixels[y, x].tolist(), colour)


def viewer_label(page):
    return page.page.inner_text(".viewer .viewer-label")


def test_volume_scrubber_shows_the_tile_asked_for(browser, volume_report, tmp_path):
    page = Page(browser, volume_report)
    try:
        page.cards().first.click()
        captions = page.page.eval_on_selector_all("#detail-figures figcaption", "cs => cs.map(c => c.textContent)")
        assert captions == ["heatmap", "overlay", "7 slices along d3"]  # the montage stays; a scan is no picture
        page.page.wait_for_function("() => document.querySelector('.viewer canvas') !== null")
        page.wait_until_loaded("#detail-figures img")
        scrubber = page.page.locator(".viewer input[type=range]")
        assert scrubber.input_value() == "3" and viewer_label(page) == "k=12 · 4/7"  # the peak slice
        folder = screenshots_folder(tmp_path)
        assert_shows(tile_shown(page, folder / "volume-tile3.png"), TILE_COLOURS[3])
        for tile in (0, 6, 5):
            scrubber.fill(str(tile))
            assert viewer_label(page) == f"k={4 * tile} · {tile + 1}/7"
            assert_shows(tile_shown(page, tmp_path / f"tile{tile}.png"), TILE_COLOURS[tile])
        scrubber.focus()
        page.page.keyboard.press("ArrowLeft")  # the arrows step through the slices, not to the next map
        page.page.keyboard.press("ArrowLeft")
        assert scrubber.input_value() == "3" and viewer_label(page) == "k=12 · 4/7"
        assert_shows(tile_shown(page, tmp_path / "stepped.png"), TILE_COLOURS[3])
        page.page.keyboard.press("End")
        assert viewer_label(page) == "k=24 · 7/7"
        assert page.page.inner_text("#detail-name").endswith("scan.nii.gz")
        page.page.locator("#detail-panel").screenshot(path=str(folder / "volume-scrubber.png"))
        page.page.keyboard.press("Escape")
        assert not page.page.is_visible("#detail")
        assert page.errors == []  # no Content-Security-Policy violation either
    finally:
        page.close()


def test_clip_player_plays_at_the_clips_fps(browser, volume_report, tmp_path):
    page = Page(browser, volume_report)
    try:
        page.cards().nth(1).click()
        assert page.page.inner_text("#detail-name").endswith("walk.mp4")
        page.wait_until_loaded("#detail-figures img")  # the animated overlay
        captions = page.page.eval_on_selector_all("#detail-figures figcaption", "cs => cs.map(c => c.textContent)")
        assert captions == ["heatmap", "overlay", "5 frames at 8 fps"]
        assert page.page.inner_text("#detail-meta").startswith("demo-video · gradcam · layer block3_conv · clip · 5×24×32")
        frame = page.page.locator(".viewer input[type=range]")
        assert frame.input_value() == "4" and viewer_label(page) == "frame 12 · 1.50 s · 5/5"  # the peak frame
        folder = screenshots_folder(tmp_path)
        assert_shows(tile_shown(page, tmp_path / "clip-start.png"), TILE_COLOURS[4])
        button = page.page.locator(".viewer button")
        assert button.inner_text() == "play"
        started = page.page.evaluate("() => performance.now()")
        button.click()
        assert button.inner_text() == "pause"
        page.page.wait_for_function("() => document.querySelector('.viewer input').value === '2'")  # 4, 0, 1, 2
        elapsed = page.page.evaluate("() => performance.now()") - started
        assert 3 * 125 - 30 <= elapsed < 3 * 125 + 1500, elapsed  # three steps at 8 fps
        button.click()
        assert button.inner_text() == "play"
        stopped = frame.input_value()
        page.page.wait_for_timeout(400)
        assert frame.input_value() == stopped  # paused
        tile = int(stopped)
        assert viewer_label(page).startswith(f"frame {3 * tile} · ")
        assert_shows(tile_shown(page, folder / "clip-frame.png"), TILE_COLOURS[tile])
        frame.fill("1")
        assert viewer_label(page) == "frame 3 · 0.38 s · 2/5"
        assert_shows(tile_shown(page, tmp_path / "clip-1.png"), TILE_COLOURS[1])
        button.click()
        page.page.wait_for_function("() => document.querySelector('.viewer input').value !== '1'")
        page.page.locator("#detail-panel").screenshot(path=str(folder / "clip-player.png"))
        page.page.keyboard.press("Escape")  # leaving stops the player
        assert page.page.evaluate("() => document.querySelector('.viewer button').textContent") == "play"
        page.page.locator("#grid .card").nth(2).click()  # a plain image: no viewer, as before
        assert page.page.locator(".viewer").count() == 0
        assert page.errors == []
    finally:
        page.close()
