"""The WorkManager overview's image chain, ported: cleanup, then water-colour, grey-scale and
blur filters on a real image, then save (or "upload") the result.

    python examples/image_pipeline.py [--out DIR] [--blur 4] [--upload]

The chain is unique work named "image-pipeline" enqueued with REPLACE: running the
script again while a chain is still going replaces it (its running step is stopped,
its rows are deleted). Each filter's output (the path of the image it wrote) is the
next filter's input, as on Android. The chain's WorkInfos are printed as they change,
from ``continuation.get_work_infos_flow()``. Needs Pillow: ``pip install workmanager[examples]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

try:
    from PIL import Image, ImageDraw, ImageFilter, ImageOps
except ImportError as exc:  # the extra names what to install
    raise SystemExit("this example needs Pillow: pip install 'workmanager[examples]'") from exc

from workmanager import (
    ExistingWorkPolicy,
    OneTimeWorkRequest,
    Result,
    Worker,
    WorkInfo,
    WorkManager,
)

NAME = "image-pipeline"


def _filtered(worker: Worker, suffix: str, apply: object) -> Result:
    """Read input["image"], apply the filter, write the result beside it; output its path."""
    source = Path(str(worker.input_data["image"]))
    out_dir = Path(str(worker.input_data["out_dir"]))
    with Image.open(source) as image:
        result = apply(image)  # type: ignore[operator]
    target = out_dir / f"{source.stem.split('.')[0]}.{suffix}.png"
    result.save(target)
    time.sleep(0.2)  # slow enough to watch each step go by
    return Result.success({"image": str(target)})


class Cleanup(Worker):
    """Deletes what earlier runs left in the output folder (the original input stays)."""

    name = "image.cleanup"

    def do_work(self) -> Result:
        out_dir = Path(str(self.input_data["out_dir"]))
        removed = 0
        for old in out_dir.glob("*.*.png"):
            old.unlink()
            removed += 1
        return Result.success({"removed": removed})


class WaterColour(Worker):
    name = "image.watercolour"

    def do_work(self) -> Result:
        def paint(image: Image.Image) -> Image.Image:
            soft = image.convert("RGB").filter(ImageFilter.ModeFilter(5)).filter(ImageFilter.SMOOTH_MORE)
            return ImageOps.posterize(soft, 4).filter(ImageFilter.EDGE_ENHANCE)

        return _filtered(self, "watercolour", paint)


class GreyScale(Worker):
    name = "image.greyscale"

    def do_work(self) -> Result:
        return _filtered(self, "greyscale", ImageOps.grayscale)


class Blur(Worker):
    name = "image.blur"

    def do_work(self) -> Result:
        radius = float(self.input_data.get("blur_radius", 2) or 2)  # type: ignore[arg-type]
        return _filtered(self, "blur", lambda image: image.filter(ImageFilter.GaussianBlur(radius)))


class Save(Worker):
    """Copies the last image to its final place (``saved/``, or ``uploads/`` with --upload)."""

    name = "image.save"

    def do_work(self) -> Result:
        source = Path(str(self.input_data["image"]))
        folder = Path(str(self.input_data["out_dir"])) / str(self.input_data["destination"])
        folder.mkdir(exist_ok=True)
        target = folder / "final.png"
        shutil.copyfile(source, target)
        return Result.success({"saved": str(target)})


WORKERS = [Cleanup, WaterColour, GreyScale, Blur, Save]


def make_input_image(path: Path) -> None:
    """A colourful picture drawn with Pillow: no downloads."""
    size = 320
    image = Image.new("RGB", (size, size))
    pixels = image.load()
    assert pixels is not None
    for x in range(size):
        for y in range(size):
            pixels[x, y] = (x * 255 // size, y * 255 // size, 160)
    draw = ImageDraw.Draw(image)
    draw.ellipse((60, 60, 200, 200), fill=(250, 210, 40), outline=(20, 20, 20), width=4)
    draw.rectangle((170, 150, 290, 290), fill=(30, 120, 220))
    draw.polygon([(20, 300), (120, 220), (150, 310)], fill=(220, 40, 90))
    image.save(path)


def describe(info: WorkInfo) -> str:
    worker = next((t for t in sorted(info.tags) if t.startswith("image.")), "?")
    text = f"  {worker:<18} {info.state.name:<9}"
    if info.output_data:
        text += f" {dict(info.output_data)}"
    return text


async def watch(wm: WorkManager, out_dir: Path, blur: float, destination: str) -> list[WorkInfo]:
    common = {"out_dir": str(out_dir)}
    original = out_dir / "input.png"
    continuation = (
        wm.begin_unique_work(NAME, ExistingWorkPolicy.REPLACE, OneTimeWorkRequest(Cleanup, input_data=common))
        .then(OneTimeWorkRequest(WaterColour, input_data={**common, "image": str(original)}))
        .then(OneTimeWorkRequest(GreyScale, input_data=common))
        .then(OneTimeWorkRequest(Blur, input_data={**common, "blur_radius": blur}))
        .then(OneTimeWorkRequest(Save, input_data={**common, "destination": destination}))
    )
    await continuation.enqueue_async()
    last: list[WorkInfo] = []
    async for infos in continuation.get_work_infos_flow():
        print(f"[{time.strftime('%H:%M:%S')}] the chain:")
        for info in infos:
            print(describe(info))
        last = infos
        if infos and all(info.state.is_finished for info in infos):
            break
    return last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="output folder (default: a new temporary folder)")
    parser.add_argument("--blur", type=float, default=4.0, help="Gaussian blur radius")
    parser.add_argument("--upload", action="store_true", help="'upload' instead of save")
    args = parser.parse_args(argv)
    out_dir: Path = args.out or Path(tempfile.mkdtemp(prefix="image-pipeline-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    make_input_image(out_dir / "input.png")

    with WorkManager(out_dir / "work.db", workers=WORKERS) as wm:  # runs the work in this process
        infos = asyncio.run(watch(wm, out_dir, args.blur, "uploads" if args.upload else "saved"))
    ok = bool(infos) and all(i.state is WorkInfo.State.SUCCEEDED for i in infos)
    print(f"done: {infos[-1].output_data['saved']!s}" if ok else f"FAILED: see {out_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
