"""lookalike.export: per-cluster folders of links or copies; the user's images untouched."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lookalike import storage
from lookalike.cluster import cluster_run
from lookalike.export import export_cluster_folders


@pytest.fixture
def image_run(tmp_path):
    """12 images in 3 colour groups: half inside the run, half in the user's own folder."""
    run, user = tmp_path / "run", tmp_path / "my photos"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    rows, vecs = [], []
    for i in range(12):
        folder, rel = (run / "images", f"images/{i}.png") if i % 2 else (user, None)
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"{i}.png"
        Image.new("RGB", (8, 8), (40 * i, 255 - 20 * i, 90)).save(p)
        rows.append(
            {"image_id": storage.sha256_file(p), "path": rel or str(p), "source": "folder",
             "origin": str(i), "status": "ok"}
        )  # fmt: skip
        vecs.append(centres[i % 3] + rng.normal(scale=0.05, size=16))
    manifest = storage.merge_manifest(run, pd.DataFrame(rows))
    vec_path, ids_path = storage.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True)
    np.save(vec_path, np.asarray(vecs, dtype=np.float32))
    storage.write_table(manifest[["image_id", "path"]], ids_path)
    return run, user


def _snapshot(paths):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size, storage.sha256_file(p)) for p in paths}


def test_export_symlinks_touch_no_original(image_run, capsys):
    run, user = image_run
    originals = sorted(user.glob("*.png")) + sorted((run / "images").glob("*.png"))
    before = _snapshot(originals)
    cluster_run(run, pca_components=4, k_values=[2, 3], export_folders="symlink", progress=False)
    assert "export: 4 clusterings, 48 links" in capsys.readouterr().out

    cl = pd.read_parquet(run / "clusters.parquet")
    manifest = storage.read_manifest(run).set_index("image_id")
    links = sorted((run / "clusters").rglob("*.png"))
    assert len(links) == 12 * 4
    for k in (2, 3):
        kmeans = run / "clusters" / f"k_{k}"
        assert sorted(p.name for p in kmeans.iterdir()) == [f"cluster_{c}" for c in range(k)]
        assert (run / "clusters" / "agglomerative" / f"k_{k}").is_dir()
        for row in cl[(cl["k"] == k) & (cl["method"] == "kmeans")].itertuples():
            original = storage.image_abspath(run, manifest.loc[row.image_id, "path"])
            link = kmeans / f"cluster_{row.cluster}" / f"{row.rank:05d}_{original.name}"
            assert link.is_symlink() and link.resolve() == original.resolve()
            assert link.read_bytes() == original.read_bytes()
            # links into the run are relative (the run can move), into the user's folder absolute
            assert os.path.isabs(os.readlink(link)) == (user in original.parents)
    assert _snapshot(originals) == before  # nothing moved, rewritten or touched
    assert sorted(p for p in user.iterdir()) == sorted(p for p in before if p.parent == user)

    # Exporting again rebuilds the folders; removing the links leaves the originals.
    export_cluster_folders(run, mode="symlink", k_values=[2], methods=["kmeans"])
    assert len(list((run / "clusters" / "k_2").rglob("*.png"))) == 12
    shutil.rmtree(run / "clusters")
    assert _snapshot(originals) == before


def test_export_copy_and_none(image_run, capsys):
    run, user = image_run
    cluster_run(run, pca_components=4, k_values=[2], agglomerative=False, progress=False)
    before = _snapshot(sorted(user.glob("*.png")))
    assert export_cluster_folders(run, mode="none") is None
    assert not (run / "clusters").exists()
    out = export_cluster_folders(run, mode="copy")
    assert out == run / "clusters"
    copies = sorted(out.rglob("*.png"))
    assert len(copies) == 12 and not any(p.is_symlink() for p in copies)
    assert "12 copies" in capsys.readouterr().out
    assert _snapshot(sorted(user.glob("*.png"))) == before
    # a missing original is counted and skipped, never fatal
    next(user.glob("*.png")).unlink()
    export_cluster_folders(run, mode="symlink")
    assert "(1 images missing)" in capsys.readouterr().out
    assert len(list(out.rglob("*.png"))) == 11


def test_write_assignments_equals_the_long_table(tmp_path):
    from lookalike.export import assignments_table, cluster_ranks, write_assignments

    rng = np.random.default_rng(3)
    ids = [f"img{i}" for i in range(50)]
    sweeps = []
    for method in ("kmeans", "similarity"):
        labels = {}
        for k in (4, 2):
            lab = rng.integers(0, k, 50)
            dist = rng.random(50).astype(np.float32)
            dist[:6] = 0.5  # ties: broken by row order
            labels[k] = (lab, dist)
        sweeps.append((method, labels))
    path = write_assignments(tmp_path / "clusters.parquet", ids, sweeps)
    want = pd.concat(
        [assignments_table(ids, lab, method=m) for m, lab in sweeps], ignore_index=True
    )
    got = pd.read_parquet(path)
    pd.testing.assert_frame_equal(got, pd.read_parquet(_written(want, tmp_path / "want.parquet")))
    lab, dist = sweeps[0][1][4]
    assert sorted(cluster_ranks(lab, dist)[lab == lab[0]]) == list(range((lab == lab[0]).sum()))
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).metadata.num_row_groups == 4  # one per (method, k)


def _written(df: pd.DataFrame, path):
    df.to_parquet(path, index=False)
    return path
