#!/usr/bin/env python3
"""Reads tessera's dataset shards with the Python tools that training code uses, and compares
every value with what the Rust writers were given.

Usage (the Rust test `python_check` writes the shards and expected.json, then runs this):

    TESSERA_REF_PYTHON=/work/refenv/bin/python \
        cargo test -p tessera-dataset --test python_check -- --nocapture

or, on a directory kept with TESSERA_CHECK_KEEP=DIR:

    python dataset/tests/check_formats.py DIR

Needs numpy, pyarrow and datasets. Optional: megatron-core (then the Megatron shards are read
with Megatron-LM's own IndexedDataset, and rebuilt byte for byte with its IndexedDatasetBuilder;
without it, a numpy reader of the documented layout is used) and webdataset (then the tar shards
are also read through a WebDataset pipeline). Prints one line per check and exits non-zero on
the first mismatch.
"""

import io
import json
import os
import struct
import sys
import tarfile
import tempfile

import numpy as np
import pyarrow.parquet as pq
from datasets import load_dataset


def code_dtype(codebook_size):
    return np.uint16 if codebook_size <= 1 << 16 else np.uint32


def token_dtype(vocab_size):
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


def stem(i, n):
    return f"data-{i:05d}-of-{n:05d}"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def check_array(arr, want, dtype, what):
    check(isinstance(arr, np.ndarray), f"{what}: not an array ({type(arr)})")
    check(arr.dtype == dtype, f"{what}: dtype {arr.dtype}, expected {np.dtype(dtype)}")
    check(arr.shape == want.shape, f"{what}: shape {arr.shape}, expected {want.shape}")
    check(np.array_equal(arr, want), f"{what}: values differ")


def check_parquet(root, exp):
    files = [os.path.join(root, "parquet", stem(i, exp["shards"]) + ".parquet") for i in range(exp["shards"])]
    sizes = exp["layout"]["codebook_sizes"]
    # File metadata, as pyarrow sees it.
    meta = pq.read_metadata(files[0]).metadata
    check(meta[b"tessera.tokenizer"].decode() == exp["tokenizer"], "parquet: tokenizer metadata")
    check(int(meta[b"tessera.sample_rate"]) == exp["sample_rate"], "parquet: sample_rate metadata")
    check(json.loads(meta[b"tessera.token_layout"]) == exp["layout"], "parquet: token_layout metadata")
    check(json.loads(meta[b"tessera.frame_rates"]) == exp["frame_rates"], "parquet: frame_rates metadata")
    check(json.loads(meta[b"tessera.n_q"]) == exp["layout"]["n_q"], "parquet: n_q metadata")

    ds = load_dataset("parquet", data_files=files, split="train")
    items = exp["items"]
    check(len(ds) == len(items), f"parquet: {len(ds)} rows, expected {len(items)}")
    n_levels = len(sizes)
    check(
        ds.column_names == ["id", "source", "sample_rate", "n_samples", "text"] + [f"codes_{k}" for k in range(n_levels)],
        f"parquet: columns {ds.column_names}",
    )
    for k, size in enumerate(sizes):
        feature = repr(ds.features[f"codes_{k}"])
        want = f"List(List(Value('{np.dtype(code_dtype(size)).name}')))"
        check(feature == want, f"parquet: codes_{k} feature {feature}, expected {want}")
    # datasets' numpy format widens every integer column to int64 (its documented default, as
    # for torch); the stored width is what the features above and pyarrow below show.
    npds = ds.with_format("numpy")
    table = pq.read_table(files)
    for i, item in enumerate(items):
        row = ds[i]
        check(row["id"] == item["id"], f"parquet row {i}: id")
        check(row["source"] == item["source"], f"parquet row {i}: source")
        check(row["text"] == item["text"], f"parquet row {i}: text {row['text']!r}")
        check(row["sample_rate"] == exp["sample_rate"], f"parquet row {i}: sample_rate")
        check(row["n_samples"] == item["n_samples"], f"parquet row {i}: n_samples")
        nrow = npds[i]
        for k, size in enumerate(sizes):
            want = np.array(item["levels"][k], dtype=code_dtype(size))
            check_array(nrow[f"codes_{k}"], want.astype(np.int64), np.int64, f"parquet row {i} codes_{k} (datasets numpy)")
            cell = table.column(f"codes_{k}")[i].values.flatten()
            check(cell.type == f"{np.dtype(code_dtype(size)).name}", f"parquet row {i} codes_{k}: stored as {cell.type}")
            check_array(cell.to_numpy().reshape(want.shape), want, code_dtype(size), f"parquet row {i} codes_{k} (pyarrow)")
    print(
        f"  parquet: load_dataset read {len(ds)} rows from {len(files)} shards; features "
        f"{[repr(ds.features[f'codes_{k}']) for k in range(n_levels)]}; [n_q, T] arrays, values and metadata match"
    )


def read_idx_numpy(prefix):
    """The .idx layout of Megatron-LM's _IndexReader, read with numpy."""
    with open(prefix + ".idx", "rb") as f:
        buf = f.read()
    check(buf[:9] == b"MMIDIDX\x00\x00", f"{prefix}.idx: header")
    version, code, n_seq, n_doc = struct.unpack("<QBQQ", buf[9:34])
    check(version == 1, f"{prefix}.idx: version {version}")
    dtype = {8: np.uint16, 4: np.int32}[code]
    lengths = np.frombuffer(buf, np.int32, n_seq, 34)
    pointers = np.frombuffer(buf, np.int64, n_seq, 34 + 4 * n_seq)
    docs = np.frombuffer(buf, np.int64, n_doc, 34 + 12 * n_seq)
    check(len(buf) == 34 + 12 * n_seq + 8 * n_doc, f"{prefix}.idx: trailing bytes")
    data = np.fromfile(prefix + ".bin", dtype=dtype)
    size = np.dtype(dtype).itemsize
    seqs = [data[p // size : p // size + n] for p, n in zip(pointers, lengths)]
    return dtype, seqs, docs


def check_megatron(root, exp):
    d = os.path.join(root, "megatron")
    items = exp["items"]
    dtype = token_dtype(exp["layout"]["vocab_size"])
    per = len(items) // exp["shards"]
    parts = [(os.path.join(d, stem(i, exp["shards"])), items[i * per : (i + 1) * per]) for i in range(exp["shards"])]
    parts.append((os.path.join(d, "merged"), items))
    try:
        import torch
        from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
    except ImportError as e:
        IndexedDataset = None
        print(f"  megatron: megatron-core not importable ({e}); numpy reader only")
    for prefix, want in parts:
        name = os.path.basename(prefix)
        rdtype, seqs, docs = read_idx_numpy(prefix)
        check(rdtype == dtype, f"megatron {name}: dtype {rdtype}")
        check(len(seqs) == len(want), f"megatron {name}: {len(seqs)} sequences")
        check(np.array_equal(docs, np.arange(len(want) + 1)), f"megatron {name}: document indices {docs}")
        for i, item in enumerate(want):
            check_array(seqs[i], np.array(item["tokens"], dtype=dtype), dtype, f"megatron {name} seq {i} (numpy)")
        if IndexedDataset is None:
            continue
        for mmap in (True, False):
            ds = IndexedDataset(prefix, multimodal=False, mmap=mmap)
            check(len(ds) == len(want), f"megatron {name}: IndexedDataset has {len(ds)} sequences")
            check(np.array_equal(ds.document_indices, np.arange(len(want) + 1)), f"megatron {name}: IndexedDataset documents")
            for i, item in enumerate(want):
                check_array(ds[i], np.array(item["tokens"], dtype=dtype), dtype, f"megatron {name} seq {i} (IndexedDataset mmap={mmap})")
            if want:
                whole = ds[0 : len(want)]
                check(all(np.array_equal(a, b["tokens"]) for a, b in zip(whole, want)), f"megatron {name}: slice read")
    if IndexedDataset is None:
        print(f"  megatron: {len(parts) - 1} shards and the merge read back with numpy")
        return
    # Megatron's own writer, fed the same tokens, must produce the same bytes; and its add_index
    # merge must equal ours.
    with tempfile.TemporaryDirectory() as tmp:
        for prefix, want in parts:
            name = os.path.basename(prefix)
            ref = os.path.join(tmp, name)
            b = IndexedDatasetBuilder(ref + ".bin", dtype=dtype)
            for item in want:
                b.add_item(torch.tensor(np.array(item["tokens"], dtype=np.int64)))
                b.end_document()
            b.finalize(ref + ".idx")
            for ext in (".bin", ".idx"):
                with open(ref + ext, "rb") as f1, open(prefix + ext, "rb") as f2:
                    check(f1.read() == f2.read(), f"megatron {name}{ext}: differs from IndexedDatasetBuilder's")
        merged = os.path.join(tmp, "add_index")
        b = IndexedDatasetBuilder(merged + ".bin", dtype=dtype)
        for prefix, _ in parts[:-1]:
            b.add_index(prefix)
        b.finalize(merged + ".idx")
        for ext in (".bin", ".idx"):
            with open(merged + ext, "rb") as f1, open(parts[-1][0] + ext, "rb") as f2:
                check(f1.read() == f2.read(), f"megatron merged{ext}: differs from IndexedDatasetBuilder.add_index's")
    print(
        f"  megatron: IndexedDataset reads {len(parts) - 1} shards and the merge ({np.dtype(dtype).name}); "
        "bytes identical to IndexedDatasetBuilder (add_item/end_document, and add_index for the merge)"
    )


def npy_bytes(arr):
    out = io.BytesIO()
    np.save(out, arr)
    return out.getvalue()


def check_webdataset(root, exp):
    d = os.path.join(root, "webdataset")
    items = exp["items"]
    sizes = exp["layout"]["codebook_sizes"]
    files = [os.path.join(d, stem(i, exp["shards"]) + ".tar") for i in range(exp["shards"])]
    names = []
    members = {}
    for path in files:
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                check(m.isfile() and m.mtime == 0 and m.mode == 0o644 and m.uid == 0 and m.gid == 0, f"{path}: header of {m.name}")
                names.append(m.name)
                members[m.name] = tar.extractfile(m).read()
    want_names = []
    for item in items:
        key = item["id"]
        want_names.append(f"{key}.json")
        want_names += [f"{key}.codes_{k}.npy" for k in range(len(sizes))]
        meta = json.loads(members[f"{key}.json"])
        want_meta = {
            "id": item["id"],
            "source": item["source"],
            "sample_rate": exp["sample_rate"],
            "n_samples": item["n_samples"],
            "text": item["text"],
            "tokenizer": exp["tokenizer"],
        }
        check(meta == want_meta, f"webdataset {key}.json: {meta}")
        for k, size in enumerate(sizes):
            raw = members[f"{key}.codes_{k}.npy"]
            want = np.array(item["levels"][k], dtype=code_dtype(size))
            check_array(np.load(io.BytesIO(raw)), want, code_dtype(size), f"webdataset {key}.codes_{k}.npy")
            check(raw == npy_bytes(want), f"webdataset {key}.codes_{k}.npy: bytes differ from numpy.save's")
    check(names == want_names, f"webdataset: members {names}")
    note = ""
    try:
        import webdataset as wds
    except ImportError:
        wds = None
    if wds is not None:
        seen = []
        for sample in wds.WebDataset(files, shardshuffle=False).decode():
            key = sample["__key__"]
            seen.append(key)
            item = next(it for it in items if it["id"] == key)
            check(sample["json"]["id"] == key, f"webdataset pipeline {key}: json")
            for k, size in enumerate(sizes):
                want = np.array(item["levels"][k], dtype=code_dtype(size))
                check_array(sample[f"codes_{k}.npy"], want, code_dtype(size), f"webdataset pipeline {key}.codes_{k}")
        check(seen == [it["id"] for it in items], f"webdataset pipeline: keys {seen}")
        note = "; the webdataset package groups and decodes them in order"
    print(f"  webdataset: {len(names)} members in order, fixed headers, npy bytes identical to numpy.save{note}")


def check_npy(root, exp):
    d = os.path.join(root, "npy", stem(0, exp["shards"]))
    sizes = exp["layout"]["codebook_sizes"]
    count = 0
    for item in exp["items"]:
        for k, size in enumerate(sizes):
            path = os.path.join(d, f"{item['rel_stem']}.codes_{k}.npy")
            want = np.array(item["levels"][k], dtype=code_dtype(size))
            check_array(np.load(path), want, code_dtype(size), path)
            with open(path, "rb") as f:
                check(f.read() == npy_bytes(want), f"{path}: bytes differ from numpy.save's")
            count += 1
    files = sum(len(fs) for _, _, fs in os.walk(d))
    check(files == count, f"npy: {files} files, expected {count}")
    print(f"  npy: {count} files in the mirrored tree, identical to numpy.save's")


def main():
    root = sys.argv[1]
    with open(os.path.join(root, "expected.json")) as f:
        expected = json.load(f)
    for name, exp in expected.items():
        print(f"{name} ({exp['tokenizer']}, levels {exp['layout']['n_q']} x {exp['layout']['codebook_sizes']}):")
        check_parquet(os.path.join(root, name), exp)
        check_megatron(os.path.join(root, name), exp)
        check_webdataset(os.path.join(root, name), exp)
        check_npy(os.path.join(root, name), exp)
    print("all format checks passed")


if __name__ == "__main__":
    main()
