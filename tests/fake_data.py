"""Small files in the formats torchvision reads (MNIST IDX, CIFAR-10 python batches), written
by the tests themselves: nothing is downloaded, and the real loading code reads them."""

from __future__ import annotations

import pickle
import struct

import numpy as np


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x00000800 + ndim (2051 images, 2049 labels),
    then each dimension as a big-endian int32, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">i", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root, folder, seed):
    """40 train and 20 test 28x28 images, labels 0..9 shuffled, in ``root/folder/raw``.

    Train pixels lie in 0..127 and test pixels in 128..255, so a mix-up of the files shows.
    """
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    parts = {}
    for split, n, low in (("train", 40, 0), ("t10k", 20, 128)):
        images = rng.integers(low, low + 128, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        parts["train" if split == "train" else "test"] = (images, labels)
    return parts


def write_cifar(root, seed):
    """Five train batches of 6 images and a test batch of 8 (rows of 3072 bytes, R then G then
    B planes, as CIFAR-10's python version), plus batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for name, n in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 8)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.permutation(np.arange(n) % 4)]  # classes 0..3
        entry = {"batch_label": name, "labels": labels, "data": data,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry))
        batches[name] = (data, np.array(labels))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    meta = {"label_names": names, "num_cases_per_batch": 6, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    train = tuple(np.concatenate(part) for part in zip(*(batches[f"data_batch_{i}"]
                                                         for i in range(1, 6))))
    return {"train": train, "test": batches["test_batch"]}
