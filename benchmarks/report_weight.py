"""The HTML report's weight for a run of N images (default 1,000): `python benchmarks/report_weight.py`.

It writes N generated scenes (gradcam_cli.evaluate.scenes, SIZE x SIZE JPEGs), runs
`gradcam --model demo-gap --json` on them (shipped model, offline), then `write_report` on the
JSON lines, twice (the second run reuses the thumbnails), and prints:
  index.html         its size, and per map
  thumbnails         their count, total and mean size
  the run's outputs  heatmaps and overlays, for comparison (the page refers to them, never copies)
and, when Playwright and a Chromium are installed, the time until the page has rendered its
first cards (the grid is built in chunks as it scrolls).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def write_scenes(folder, count, size):
    import cv2

    from gradcam_cli.evaluate import scenes

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        scene = scenes.generate(i, seed=2, size=size)
        cv2.imwrite(str(folder / f"scene{i:05d}.jpg"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])


def folder_bytes(paths):
    paths = list(paths)
    return len(paths), sum(p.stat().st_size for p in paths)


def kib(count):
    return f"{count / 1024:,.1f} KiB"


def page_open_seconds(index):
    """Seconds from navigation until the page's first cards are in, or None without a browser."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    executable = os.environ.get("GRADCAM_CHROMIUM") or next(
        (path for path in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if path), None)
    if executable is None:
        return None
    arguments = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=arguments)
        page = browser.new_page()
        started = time.perf_counter()
        page.goto(index.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        seconds = time.perf_counter() - started
        browser.close()
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=320, help="the scenes' side in pixels")
    parser.add_argument("--top-k", type=int, default=1, help="maps per image")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    options = parser.parse_args()

    work = options.keep or Path(tempfile.mkdtemp(prefix="report-weight-"))
    images, outputs, report = work / "images", work / "out", work / "report"
    write_scenes(images, options.images, options.size)
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "gradcam_cli", str(images), "--model", "demo-gap", "-o", str(outputs),
                          "--top-k", str(options.top_k), "--json", "-q"], capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"the gradcam run failed:\n{run.stderr[-2000:]}")
    run_seconds = time.perf_counter() - started
    results = work / "results.jsonl"
    results.write_text(run.stdout)

    from gradcam_cli.report import read_results, write_report

    records = list(read_results(results))
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        written = write_report(records, report)
        timings.append(time.perf_counter() - started)

    html = written.index.stat().st_size
    thumbs, thumb_bytes = folder_bytes((report / "thumbs").iterdir())
    heatmaps, heatmap_bytes = folder_bytes(outputs.rglob("*.heatmap.png"))
    overlays, overlay_bytes = folder_bytes(outputs.rglob("*.overlay.png"))
    print(f"{len(records)} images, {written.maps} maps ({options.size}x{options.size} scenes, demo-gap, "
          f"run {run_seconds:.1f} s)")
    print(f"index.html        {kib(html)} ({html / max(written.maps, 1):,.0f} bytes per map)")
    print(f"thumbnails        {thumbs} files, {kib(thumb_bytes)} ({thumb_bytes / max(thumbs, 1) / 1024:.1f} KiB each)")
    print(f"report folder     {kib(html + thumb_bytes)}")
    print(f"run's outputs     {heatmaps} heatmaps {kib(heatmap_bytes)}, {overlays} overlays {kib(overlay_bytes)} "
          "(referred to, not copied)")
    print(f"write_report      {timings[0]:.2f} s, again {timings[1]:.2f} s (thumbnails reused)")
    opened = page_open_seconds(written.index)
    print("page open         " + ("no browser (playwright and chromium)" if opened is None else
                                  f"{opened:.2f} s to the first cards in headless Chromium"))
    if options.keep is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
