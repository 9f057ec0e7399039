"""How fast searchapp indexes a long 1080p H.264 video, against real time.

    python benchmarks/video_index.py [--minutes 10] [--gop-seconds 1,10]

Writes a synthetic video with PyAV (libx264, ultrafast): pans across scikit-image's photos, a
cut every 20 s, 1920x1080 at 30 frames/s, once with a keyframe every second (what phones
write) and once every 10 s (a long-GOP encoder, where keyframes alone are too sparse and every
frame is decoded). Then, on this machine's cores:
- `sampling`: `ingest.video.sample_frames` alone (probing, decoding, signatures, the kept
  frames' pictures at the encoder's 224 px);
- `index`: `searchapp index` of a folder holding the video, into a fresh library with the
  default CNN: hashing, sampling, embedding, committing. Loading the model is left out, as in
  the photo benchmarks (it is paid once a run). The share spent embedding is the time in the
  encoder and its preprocessing; the rest is reading and decoding.

Writes benchmarks/results/video_index.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from bench_results import write_result
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searchapp.ingest.video import probe, sample_frames  # noqa: E402
from searchapp.library import Library  # noqa: E402

SIZE = (1920, 1080)
FPS = 30
SHOT_SECONDS = 20


def photos() -> list[Image.Image]:
    from skimage import data

    return [
        Image.fromarray(np.asarray(getter())).convert("RGB")
        for getter in (data.astronaut, data.coffee, data.chelsea, data.rocket)
    ]


def write_video(path: Path, minutes: float, gop_seconds: float) -> float:
    import av

    started = time.perf_counter()
    # each photo scaled once to the frame's height and 1.4 frames wide; a pan is then a moving
    # window over it, a slice of the array, so that writing the video costs the encoder only
    width, height = SIZE
    sources = [np.asarray(p.resize((int(width * 1.4), height))) for p in photos()]
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height = SIZE
    stream.pix_fmt = "yuv420p"
    stream.codec_context.gop_size = int(gop_seconds * FPS)
    stream.codec_context.time_base = Fraction(1, FPS)
    stream.options = {"preset": "ultrafast", "crf": "23"}
    frames = int(minutes * 60 * FPS)
    per_shot = SHOT_SECONDS * FPS
    for i in range(frames):
        photo = sources[(i // per_shot) % len(sources)]
        x0 = int((photo.shape[1] - width) * (i % per_shot) / per_shot)
        window = np.ascontiguousarray(photo[:, x0 : x0 + width])
        frame = av.VideoFrame.from_ndarray(window, format="rgb24")
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return time.perf_counter() - started


def measure(path: Path, minutes: float, gop_seconds: float) -> dict[str, Any]:
    info = probe(str(path))
    started = time.perf_counter()
    kept = list(sample_frames(str(path), side=224))
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as scratch:
        library = Library(Path(scratch) / "lib")
        summary = library.index([str(path.parent)])
        library.close()
    working = summary.seconds - summary.model_seconds
    why = {reason: sum(f.why == reason for f in kept) for reason in ("first", "cut", "interval")}
    return {
        "minutes": minutes,
        "keyframe_every_seconds": gop_seconds,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "duration_seconds": round(info.duration, 1),
        "sampling_seconds": round(seconds, 2),
        "times_real_time": round(info.duration / seconds, 1),
        "frames_kept": len(kept),
        "kept_per_minute": round(len(kept) / (info.duration / 60), 1),
        "kept_by_reason": why,
        "index_seconds": round(working, 2),
        "index_times_real_time": round(info.duration / working, 1),
        "index_frames": summary.frames,
        "embedding_seconds": round(summary.frame_seconds, 2),
        "decoding_share": round(1 - summary.frame_seconds / working, 3),
        "model_load_seconds": round(summary.model_seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--gop-seconds", default="1,10")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/video_index.json")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for gop in (float(g) for g in args.gop_seconds.split(",")):
            (Path(scratch) / f"gop{gop:g}").mkdir()
            path = Path(scratch) / f"gop{gop:g}" / "video.mp4"
            wrote = write_video(path, args.minutes, gop)
            print(
                f"wrote {args.minutes:g} min, keyframe every {gop:g} s in {wrote:.0f} s", flush=True
            )
            result = measure(path, args.minutes, gop)
            print(result, flush=True)
            runs.append(result)
    write_result(args.out, {"size": list(SIZE), "fps": FPS, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
