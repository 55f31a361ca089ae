"""Write the sample clip into sample_images/: `moving_square.avi`, a light square moving right
over a dark background, one step per frame.

    python scripts/make_sample_clip.py

16 frames of 64 x 48 pixels (width x height) at 8 frames per second, Motion JPEG in an AVI
container (fourcc MJPG), which every OpenCV build can write and read, the headless wheels
included. Frame t (0-based) holds a 12 x 12 square of RGB (240, 200, 40) with its left column at
x = 4 + 3 t and its top row at y = 18, on RGB (20, 30, 60); nothing else. Motion JPEG is lossy:
a reader finds the square by thresholding, not by exact bytes. Deterministic: the frames are
drawn here, without randomness, and the same OpenCV writes the same bytes on every run.
"""

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "sample_images" / "moving_square.avi"
FRAMES, WIDTH, HEIGHT, FPS = 16, 64, 48, 8.0
SIDE, TOP, LEFT, STEP = 12, 18, 4, 3
SQUARE, BACKGROUND = (240, 200, 40), (20, 30, 60)  # RGB


def frame(t):
    """Frame `t` as (HEIGHT, WIDTH, 3) uint8 RGB."""
    rgb = np.empty((HEIGHT, WIDTH, 3), dtype=np.uint8)
    rgb[:] = BACKGROUND
    left = LEFT + STEP * t
    rgb[TOP : TOP + SIDE, left : left + SIDE] = SQUARE
    return rgb


def main():
    writer = cv2.VideoWriter(str(OUT), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        sys.exit(f"OpenCV cannot write Motion JPEG to {OUT}")
    try:
        for t in range(FRAMES):
            writer.write(cv2.cvtColor(frame(t), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    print(f"{OUT.relative_to(ROOT)}: {OUT.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
