"""examples/image_pipeline.py runs its chain to the end, twice (the second run REPLACEs by name)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "image_pipeline.py"


def run(out: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_image_pipeline_filters_a_real_image_and_saves_it(tmp_path: Path) -> None:
    from PIL import Image

    output = run(tmp_path, "--blur", "3")

    assert "image.save         SUCCEEDED" in output
    with Image.open(tmp_path / "saved" / "final.png") as final:
        assert final.mode == "L" and final.size == (320, 320)  # grey-scale, then blurred
    for step in ("watercolour", "greyscale", "blur"):
        assert (tmp_path / f"input.{step}.png").exists()


def test_running_it_again_replaces_the_chain_and_uploads_by_flag(tmp_path: Path) -> None:
    run(tmp_path)
    output = run(tmp_path, "--upload")

    assert "'removed': 3" in output  # the new chain's cleanup removed the first run's images
    assert (tmp_path / "uploads" / "final.png").exists()
