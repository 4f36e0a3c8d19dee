"""Bulk jobs cut into fixed-size shards: the same files on 1 or N processes, resumable after a kill.

A job over n images cuts them into shards of `shard_size` consecutive images (shard k holds images
[k * size, min((k + 1) * size, n))), so the shard boundaries, and each image's seed (base + i), do
not depend on the number of processes. The shards not yet done are dealt to the ranks in rounds
(in round r, rank j takes the (r * world + j)-th). A rank writes its shard's files, each
atomically, and then the shard's entry (every file's size and sha256); a shard is done when its
entry exists and its files still match it, so a killed job, rerun with the same command on any
number of processes, skips the shards that are done and redoes the others.

The output folder (on a filesystem every rank sees, across nodes a shared one):
  job.json          what was asked and the model's checksum; a rerun must ask for the same job
  shard-00000.npz   a shard's data (or a folder shard-00000/ of PNGs)
  shard-00000.json  its entry: its image range and its files with their sizes and sha256
  manifest.json     the job and every shard's entry, in shard order, once all shards are done
  runs.jsonl        one line per run: processes, images computed, images/s overall and per rank
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...checkpoint import WEIGHTS_FILE, load_model
from ...files import atomic_write_bytes, atomic_write_text, sha256_file
from ...inference import optimize_for_inference
from ...vae import VDVAE
from .. import distributed
from ..distributed import Dist
from ..progress import progress_bar

JOB_FILE = "job.json"
MANIFEST_FILE = "manifest.json"
RUNS_FILE = "runs.jsonl"
# Fields of job.json that describe the job without changing its outputs (a moved model folder
# with the same weights is the same job).
INFORMATIONAL = ("model",)


class JobError(ValueError):
    """An output folder that holds a different job than the one asked for."""


@dataclass(frozen=True)
class Shard:
    """Images [start, stop) of a job."""

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"

    def batches(self, size: int) -> Iterator[range]:
        """The shard's images in batches of `size` (the last may be smaller)."""
        for start in range(self.start, self.stop, size):
            yield range(start, min(start + size, self.stop))


def plan(n: int, shard_size: int) -> list[Shard]:
    """n images in shards of `shard_size` (the last may be smaller)."""
    if n < 1 or shard_size < 1:
        raise ValueError(f"need at least one image and a shard size >= 1, got n={n}, shard size {shard_size}")
    return [Shard(k, start, min(start + shard_size, n)) for k, start in enumerate(range(0, n, shard_size))]


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An .npz (what np.load reads) whose bytes depend on the arrays only: np.savez stamps each
    member with the time of writing, so equal arrays written twice would differ."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def model_record(path: str | Path, vae: VDVAE) -> dict:
    """The model of a job: where it was read from, the sha256 of its weights, its architecture."""
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    return {"model": str(path), "model_sha256": sha256_file(weights), "hparams": vae.hp.to_dict()}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help of a job: its module docstring as written, each option's default (where it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The options every bulk job takes: the model, the output folder, the shard and batch sizes,
    the device and the inference form."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter)
    p.add_argument("model", help="model folder, or an official .th file (with --preset)")
    p.add_argument("--out", required=True, help="output folder; a rerun resumes the job it holds")
    p.add_argument("--shard-size", type=int, default=1000, help="images per shard: the unit of resume")
    p.add_argument("--batch-size", type=int, default=100, help="images per forward pass")
    p.add_argument("--preset", default=None, help="preset of an official .th file (none: inferred)")
    p.add_argument(
        "--device", default=None, help="cpu or cuda (default: cuda when available; a GPU per rank)"
    )
    p.add_argument(
        "--optimize",
        action="store_true",
        help="model.inference.optimize_for_inference: channels-last, bf16 autocast on CUDA",
    )
    return p


def run_options(args: argparse.Namespace) -> dict:
    """The common options that shape the outputs, for the job record (the device does not: a rank
    computes its shards wherever it runs)."""
    if args.shard_size < 1 or args.batch_size < 1:
        raise ValueError("--shard-size and --batch-size must be >= 1")
    return {"shard_size": args.shard_size, "batch_size": args.batch_size, "optimize": args.optimize}


def load_model_for(args: argparse.Namespace, dist: Dist) -> VDVAE:
    """The job's model on this rank's device, in the inference form asked for."""
    vae = load_model(args.model, preset=args.preset, device=dist.device)
    run_options(args)  # refuse bad sizes before any work
    return optimize_for_inference(vae) if args.optimize else vae


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"


class ShardFolder:
    """A job's output folder: its job record, the shards' files and entries, the manifest."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def claim(self, job: dict) -> None:
        """Record `job` in a new folder, or check that the folder holds this job (JobError if not);
        remove temporaries that a killed run left (no rank writes yet when this runs)."""
        path = self.root / JOB_FILE
        if path.exists():
            held = json.loads(path.read_text())
            differ = sorted(k for k in {*held, *job} - set(INFORMATIONAL) if held.get(k) != job.get(k))
            if differ:
                raise JobError(
                    f"{self.root} holds a different job (it differs in {', '.join(differ)}): "
                    "rerun with the same options to resume it, or choose another --out"
                )
        else:
            atomic_write_text(path, _json(job))
        for stray in [*self.root.glob(".*.tmp"), *self.root.glob("shard-*/.*.tmp")]:
            stray.unlink(missing_ok=True)

    def write(self, name: str, data: bytes) -> dict:
        """Write one file of a shard atomically; its record for the shard's entry."""
        atomic_write_bytes(self.root / name, data)
        return {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    def _entry_path(self, shard: Shard) -> Path:
        return self.root / f"{shard.name}.json"

    def finish(self, shard: Shard, files: list[dict]) -> None:
        """Mark `shard` done: its entry, written after its files."""
        entry = {"shard": shard.index, "start": shard.start, "stop": shard.stop, "files": files}
        atomic_write_text(self._entry_path(shard), _json(entry))

    def entry(self, shard: Shard) -> dict | None:
        """The shard's entry when the shard is done and its files match it, else None."""
        try:
            entry = json.loads(self._entry_path(shard).read_text())
            if [entry["shard"], entry["start"], entry["stop"]] != [shard.index, shard.start, shard.stop]:
                return None
            for record in entry["files"]:
                path = self.root / record["name"]
                if not path.is_file() or path.stat().st_size != record["bytes"]:
                    return None
                if sha256_file(path) != record["sha256"]:
                    return None
        except (OSError, ValueError, KeyError, TypeError):  # no entry, or one that is not ours
            return None
        return entry

    def write_manifest(self, job: dict, shards: list[Shard]) -> Path:
        entries = [json.loads(self._entry_path(s).read_text()) for s in shards]
        manifest = {"job": job, "images": shards[-1].stop, "shards": entries}
        atomic_write_text(self.root / MANIFEST_FILE, _json(manifest))
        return self.root / MANIFEST_FILE

    def log_run(self, summary: dict) -> None:
        with open(self.root / RUNS_FILE, "a") as f:
            f.write(json.dumps(summary) + "\n")


def read_arrays(root: str | Path) -> dict[str, np.ndarray]:
    """Every .npz shard of a finished job, in shard order, concatenated array by array."""
    manifest = json.loads((Path(root) / MANIFEST_FILE).read_text())
    parts: dict[str, list[np.ndarray]] = {}
    for entry in manifest["shards"]:
        for record in entry["files"]:
            if record["name"].endswith(".npz"):
                with np.load(Path(root) / record["name"], allow_pickle=False) as npz:
                    for key in npz.files:
                        parts.setdefault(key, []).append(npz[key])
    return {key: np.concatenate(arrays) for key, arrays in parts.items()}


# compute(shard, folder, advance) writes the shard's files through folder.write, calls
# advance(k) after each k images, and returns the files' records.
Compute = Callable[[Shard, ShardFolder, Callable[[int], object]], list[dict]]


@dataclass
class Job:
    """A bulk job: where it writes, what it records (called on rank 0 only: it may hash the model),
    its shards and how one shard is computed."""

    out: Path
    describe: Callable[[], dict]
    shards: list[Shard]
    compute: Compute
    name: str


def run(job: Job, dist: Dist) -> dict | None:
    """Compute every shard that is not done, on every rank; the run's summary on rank 0 (None on
    the other ranks) after the manifest is written."""
    folder = ShardFolder(job.out)
    record, problem = None, None
    if dist.main:
        record = job.describe()
        try:
            folder.claim(record)
        except JobError as e:
            problem = str(e)
    problem = dist.gather(problem)[0]  # also keeps every rank from writing before claim() is over
    if problem:
        raise JobError(problem)
    shards = job.shards
    mine = shards[dist.rank :: dist.world]  # the ranks verify the finished shards together
    done = set().union(*dist.gather({s.index for s in mine if folder.entry(s) is not None}))
    todo = [s for s in shards if s.index not in done]
    total = sum(len(s) for s in shards)
    bar = progress_bar(total, total - sum(map(len, todo)), dist.main, unit="img", desc=job.name)
    images, busy, start = 0, 0.0, time.perf_counter()
    for first in range(0, len(todo), dist.world):  # one round: a shard for each rank
        own = 0
        if first + dist.rank < len(todo):
            shard = todo[first + dist.rank]
            t = time.perf_counter()
            folder.finish(shard, job.compute(shard, folder, bar.update))
            busy += time.perf_counter() - t
            own = len(shard)
        images += own
        bar.update(sum(dist.gather(own)) - own)  # rank 0's bar counted its own images as they came
    wall = time.perf_counter() - start
    bar.close()
    per_rank = dist.gather({"rank": dist.rank, "images": images, "seconds": round(busy, 3)})
    if not dist.main:
        return None
    summary = _summary(job, dist.world, total, len(done), wall, per_rank)
    folder.write_manifest(record, shards)
    folder.log_run({"time": round(time.time(), 3), **summary})
    return summary


def _summary(job: Job, world: int, total: int, skipped: int, wall: float, per_rank: list[dict]) -> dict:
    """A run in figures: images computed, images/s overall (over the run's wall time) and per rank
    (over the time the rank spent computing and writing its shards)."""
    for r in per_rank:
        r["images_per_s"] = round(r["images"] / r["seconds"], 2) if r["seconds"] > 0 else 0.0
    computed = sum(r["images"] for r in per_rank)
    return {
        "job": job.name,
        "out": str(job.out),
        "processes": world,
        "images": total,
        "computed": computed,
        "skipped_shards": skipped,
        "seconds": round(wall, 3),
        "images_per_s": round(computed / wall, 2) if computed else 0.0,
        "per_rank": per_rank,
    }


def main(prepare: Callable[[Dist], Job], device: str | None) -> int:
    """A job's command: join the torchrun group (if any), prepare the job and run it, print the
    summary. 2, with the problem, for bad options, data or model (prepare's ValueErrors:
    CheckpointError, DataError, ...) and for an output folder that holds another job."""
    dist = distributed.setup(device)
    finished = False
    try:
        try:
            job = prepare(dist)
        except ValueError as e:
            return _refuse(e, dist)
        try:
            summary = run(job, dist)
        except JobError as e:  # any other error of a run is a bug: it keeps its traceback
            return _refuse(e, dist)
        finished = True
    finally:
        dist.close(finished)
    if summary is not None:
        print(json.dumps(summary, indent=2))
    return 0


def _refuse(error: Exception, dist: Dist) -> int:
    where = f"rank {dist.rank}: " if dist.enabled else ""
    print(f"error: {where}{error}", file=sys.stderr)
    return 2
