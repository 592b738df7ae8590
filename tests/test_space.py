"""A full disk: every write goes through the one atomic writer, which turns a write that fails
for want of room into an error naming the file, the free space and what to do; and the config
check's estimate of what a grid writes against the room under results/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from nnboundary.errors import DiskFullError
from nnboundary.formats import atomic
from nnboundary.settings import space
from nnboundary.settings.config import load_config, validate_config

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full (not Linux)")


@needs_dev_full
def test_a_write_to_a_full_device_names_the_file_the_space_and_the_fix(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    with pytest.raises(DiskFullError) as caught:
        with atomic.atomic_path(target):
            with open(FULL, "wb") as sink:  # ENOSPC, as on a full file system
                sink.write(b"x" * 65536)
    message = str(caught.value)
    assert str(target) in message and "is full" in message and "free" in message
    assert "run the same command again" in message and "kept" in message
    assert not target.exists() and list(target.parent.iterdir()) == []  # nothing half-written


@needs_dev_full
def test_torch_save_on_a_full_device_is_a_full_disk_not_torchs_short_write():
    """torch.save given a path reports a full disk as 'unexpected pos …'; given a file object,
    as the OS does (ENOSPC), which the writer names."""
    with pytest.raises(DiskFullError, match="is full"):
        atomic.write_bytes_with(Path("/tmp") / "nnboundary-test-unwritten.pt",
                                lambda handle: torch.save({"w": torch.zeros(10_000)},
                                                          open(FULL, "wb")))
    assert not (Path("/tmp") / "nnboundary-test-unwritten.pt").exists()


def test_an_error_that_names_no_cause_is_a_full_disk_only_where_the_disk_is_full(
        tmp_path, monkeypatch):
    unexpected = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704")
    with pytest.raises(RuntimeError, match="unexpected pos"):  # room enough: not a full disk
        with atomic.atomic_path(tmp_path / "a.pt"):
            raise unexpected
    monkeypatch.setattr(atomic, "free_bytes", lambda path: 1000)
    with pytest.raises(DiskFullError, match="1 kB free"):
        with atomic.atomic_path(tmp_path / "a.pt"):
            raise unexpected
    with pytest.raises(ValueError):  # a bug in the block is never taken for a full disk
        with atomic.atomic_path(tmp_path / "a.pt"):
            raise ValueError("not a write")


def _mounted_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return done.returncode == 0


def test_a_training_job_on_a_full_file_system_says_so(tmp_path):
    """The failure the issue measured: a train job whose checkpoint does not fit. On a 256 kB
    file system the job ends with the file, the free space and the fix, no traceback, and no
    half-written output."""
    small = tmp_path / "small"
    if not _mounted_tmpfs(small, "256k"):
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
        data = tmp_path / "d.npz"

        def cli(*args):
            return subprocess.run([sys.executable, "-m", "nnboundary", *args], env=env,
                                  capture_output=True, text=True)

        assert cli("prepare", "--dataset", "mnist5k01", "--output", str(data)).returncode == 0
        result = cli("train", "--data", str(data), "--arch", "mlp", "--seed", "0",
                     "--arch-settings", json.dumps({"hidden": 100}),
                     "--settings", json.dumps({"epochs": 3, "n_checkpoints": 3}),
                     "--checkpoints", str(small / "c.pt"), "--history", str(small / "h.tsv"))
        assert result.returncode == 1, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"nnboundary train: error: cannot write {small}/")
        assert "is full" in result.stderr and "run the same command again" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (small / "c.pt").exists()
        assert not [p for p in small.iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_the_estimate_counts_the_grid_and_says_what_it_leaves_out(tmp_path):
    config = load_config(REPO / "config.yaml")
    low, high, left_out = space.output_estimate(config)
    assert 0 < low < high and left_out == []
    more = load_config(REPO / "config.yaml", REPO / "configs" / "targets.yaml")
    assert space.output_estimate(more)[0] > low  # one more dataset, more bytes
    data = tmp_path / "mine.npz"
    np.savez(data, X=np.zeros((10, 2)), y=np.arange(10) % 2)
    own = validate_config({"grid": {"datasets": ["mine"], "archs": ["mlp"], "seeds": [0]},
                           "datasets": {"mine": {"source": f"file:{data}"}}})
    assert space.output_estimate(own)[2] == [
        "dataset mine (its size is known once it is prepared)"]


def test_a_full_file_system_is_reported_before_the_grid_starts(tmp_path, monkeypatch):
    config = load_config(REPO / "config.yaml")
    line, short = space.space_report(config, tmp_path / "results")
    assert not short and "the grid writes about" in line and "free there" in line
    monkeypatch.setattr(space, "free_bytes", lambda path: 10_000_000)
    line, short = space.space_report(config, tmp_path / "results")
    assert short and "Too little room" in line and "10 MB free" in line


def test_the_catalogs_sizes_are_the_prepared_sets_sizes():
    """The sizes the estimate reads from the catalog are what prepare makes (the sets that
    ship; the torchvision ones need their files)."""
    import math

    from nnboundary.data.make import make_dataset
    from nnboundary.settings import catalog
    from nnboundary.settings.layers import dataset_settings

    for name, entry in catalog.DATASETS.items():
        if entry.kind == "torchvision":
            continue
        settings = dict(dataset_settings({}, name), **({"n_samples": 300} if entry.seeded else {}))
        data = make_dataset(name, 0, settings)
        samples = entry.size[0] or 300
        assert (len(data.X_train) + len(data.X_test), math.prod(data.input_shape),
                data.n_classes) == (samples, entry.size[1], entry.size[2]), name
