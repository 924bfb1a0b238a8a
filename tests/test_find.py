"""lookalike.find: ``lookalike find RUN QUERY...`` with the real VGG16 weights.

One small logo run (ten synthetic logos: lockups, icons, an icon cropped from its lockup)
is embedded with the ``logos`` preset and taken through stage 04 once for the module; the
queries are files, folders, URLs on a local server and a domain whose logo comes through
stage 02's provider chain from a real HTTP server on 127.0.0.1 used as the proxy.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from logo_images import _icon, _lockup, _logo_run, _on_white
from PIL import Image

from lookalike import cli, storage
from lookalike.exceptions import ConfigError
from lookalike.find import FIND_COLUMNS, find, query_kind, read_find
from lookalike.neighbors import read_neighbors
from lookalike.paths import RunLayout

#: Shape family of each run image (labels for ``precision``), by origin.
SHAPES = ["circle", "square", "diamond", "diamond", "star", "pie", "pie", "star", "square"]
SHAPES += ["circle"]


def icon_crop(img: Image.Image) -> Image.Image:
    """The left square of the trimmed artwork: a lockup's own icon."""
    art = img.crop(img.getchannel("A").getbbox() if img.mode == "RGBA" else img.getbbox())
    return art.crop((0, 0, art.height, art.height))


RED = _lockup(_icon("circle", (220, 40, 40)), "Redcorp")
BLUE = _lockup(_icon("square", (20, 110, 220)), "Bluebox")


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def logo_run(tmp_path_factory):
    """Ten logos through 03 (logos preset, no whitening: too few images) and 04."""
    from lookalike.cluster import cluster_run
    from lookalike.embed import embed_run

    images = [
        RED,  # 0: a lockup; its icon crop is a query
        icon_crop(BLUE),  # 1: an icon cropped from its lockup; the lockup is a query
        _lockup(_icon("diamond", (30, 160, 60)), "Greenly"),
        _icon("diamond", (240, 170, 0)),
        _lockup(_icon("star", (120, 60, 200)), "Starry"),
        _icon("pie", (0, 170, 170)),
        _lockup(_icon("pie", (220, 40, 40)), "Rival"),  # the brand's red, another shape
        _icon("star", (20, 110, 220)),  # the other brand's blue, another shape
        _on_white(_lockup(_icon("square", (30, 160, 60)), "Squarely")),  # a square, in green
        _icon("circle", (30, 30, 30)),  # a circle, in black
    ]
    root = tmp_path_factory.mktemp("find")
    run, ids = _logo_run(root, images)
    embed_run(run, preset="logos", whiten=0, progress=False)
    cluster_run(run, k_values=[2, 3], progress=False)
    queries = root / "queries"
    queries.mkdir()
    icon_crop(RED).save(queries / "redcorp-icon.png")
    BLUE.save(queries / "bluebox.png")
    return run, ids, queries


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch):
    """A developer's proxy variables must not reroute the 127.0.0.1 servers."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def _by_query(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {Path(str(q)).name: g.reset_index(drop=True) for q, g in table.groupby("query")}


def test_a_logo_and_its_own_icon_crop_find_each_other(logo_run, capsys):
    run, ids, queries = logo_run
    icon, lockup = queries / "redcorp-icon.png", queries / "bluebox.png"
    assert cli.main(["find", str(run), str(icon), str(lockup), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "find: 2/2 query images against 10 images, 10 hits" in out
    table = pd.read_parquet(RunLayout(run).find_results("find"))
    assert list(table.columns) == list(FIND_COLUMNS)
    got = _by_query(table)
    # the lockup asks, the crop of its icon is in the run: a part of the query matched it
    hits = got["bluebox.png"]
    assert hits.loc[0, ["image_id", "label", "match"]].tolist() == [
        ids[1], "brand1.test", "part~whole"
    ]  # fmt: skip
    # the icon crop asks, its lockup is in the run: the query matched a part of it
    hits = got["redcorp-icon.png"]
    assert hits.loc[0, ["image_id", "label", "match"]].tolist() == [
        ids[0], "brand0.test", "whole~part"
    ]  # fmt: skip
    for g in got.values():
        assert g["rank"].tolist() == [1, 2, 3, 4, 5]
        assert g["similarity"].is_monotonic_decreasing and g["image_id"].is_unique
        assert g.loc[0, "similarity"] > g.loc[1, "similarity"] + 0.01  # a margin, not a tie
    # the query images have a run folder of their own, and a contact sheet each
    qm = storage.read_manifest(RunLayout(run).find_queries("find"))
    assert len(qm) == 2 and set(qm["source"]) == {"folder"}
    sheets = sorted(RunLayout(run).find_sheets_dir("find").glob("*.png"))
    assert [p.name[:10] for p in sheets] == ["001-redcor", "002-bluebo"]
    with Image.open(sheets[0]) as im:
        assert im.width > 5 * 100  # the query and five hits side by side
    pd.testing.assert_frame_equal(read_find(run, "find"), table)


def _same_images(src: Path, dst: Path) -> Path:
    """Another run of the same logo files and manifest (its own 03 settings and 04)."""
    dst.mkdir(parents=True)
    shutil.copytree(src / "logos", dst / "logos")
    shutil.copy(RunLayout(src).manifest, RunLayout(dst).manifest)
    return dst


@pytest.mark.parametrize("whiten", [0, 8])
def test_scores_are_those_of_the_runs_own_neighbours(logo_run, tmp_path, whiten):
    """A query that is an image of the run scores 1 with itself and, with every other
    image, the similarity RUN/neighbors.parquet holds for that pair (whitened or not)."""
    from lookalike.cluster import cluster_run
    from lookalike.embed import embed_run

    run = logo_run[0]
    if whiten:  # the same vectors from the cache, whitened on the run's own images
        run = _same_images(run, tmp_path / "whitened")
        embed_run(run, preset="logos", whiten=whiten, progress=False)
        cluster_run(run, k_values=[2, 3], progress=False)
    manifest = storage.read_manifest(run)
    asked = manifest.iloc[[0, 1, 4, 8]]
    copies = tmp_path / "copies"
    copies.mkdir()
    for p in asked["path"]:
        shutil.copy(RunLayout(run).image_path(p), copies / Path(p).name)
    table = find(run, [str(copies)], name="self", top=10, sheets=False, progress=False)
    nb = read_neighbors(run)
    assert len(nb) == 10 * 9  # neighbors_k = 10: every pair of the run is listed
    pair = nb.set_index(["image_id", "neighbor_id"])["similarity"]
    assert set(table["query_id"]) == set(asked["image_id"])
    for qid, hits in table.groupby("query_id"):
        assert len(hits) == 10
        first = hits.iloc[0]
        assert first["image_id"] == qid and first["similarity"] == pytest.approx(1.0, abs=1e-5)
        others = hits.iloc[1:]
        want = [pair[(qid, j)] for j in others["image_id"]]
        np.testing.assert_allclose(others["similarity"], want, atol=1e-5)


def test_share_precision_and_the_cli_options(logo_run, tmp_path, capsys):
    run, ids, queries = logo_run
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"origin": [f"brand{i}.test" for i in range(10)], "group": SHAPES}).to_csv(
        labels, index=False
    )
    args = ["find", str(run), str(queries), "--name", "opts", "--labels", str(labels)]
    assert cli.main([*args, "--top", "9", "--csv", "--no-sheets"]) == 0
    layout = RunLayout(run)
    assert not layout.find_sheets_dir("opts").exists()
    table = pd.read_parquet(layout.find_results("opts"))
    assert len(table) == 2 * 9
    csv = pd.read_csv(layout.find_csv("opts"))
    assert csv["image_id"].tolist() == table["image_id"].tolist()
    np.testing.assert_allclose(csv["similarity"], table["similarity"], rtol=1e-6)

    # share: in 0..1, the higher the similarity the lower, and a count of the run's pairs
    nb = read_neighbors(run)  # every ordered pair of the run (neighbors_k >= 9)
    sims = nb["similarity"].to_numpy()
    assert table["share"].between(0, 1).all()
    ordered = table.sort_values("similarity", ascending=False)
    assert ordered["share"].is_monotonic_increasing
    assert table["share"].min() < table["share"].max()
    for s, share in zip(table["similarity"], table["share"], strict=True):
        low, high = (sims >= s + 1e-5).mean(), (sims >= s - 1e-5).mean()
        assert low - 1e-9 <= share <= high + 1e-9, (s, share, low, high)

    # precision: among the run's pairs at least this similar, the share of the same shape
    group = dict(zip([f"brand{i}.test" for i in range(10)], SHAPES, strict=True))
    origin = storage.read_manifest(run).set_index("image_id")["origin"]
    pairs = zip(nb["image_id"], nb["neighbor_id"], strict=True)
    same = [group[origin[a]] == group[origin[b]] for a, b in pairs]
    checked = 0
    for s, precision in zip(table["similarity"], table["precision"], strict=True):
        above = [x for x, sim in zip(same, sims, strict=True) if sim >= s]
        if above:  # a hit above every pair of the run has no precision to give
            assert precision == pytest.approx(sum(above) / len(above), abs=1e-6), s
            checked += 1
    assert checked >= 12 and table["precision"].notna().sum() >= checked

    # --top and --min-similarity
    cut = float(np.sort(table["similarity"])[len(table) // 2])
    capsys.readouterr()
    assert cli.main([*args, "--top", "3", "--min-similarity", str(cut), "--no-sheets"]) == 0
    small = pd.read_parquet(layout.find_results("opts"))
    assert 0 < len(small) <= 6 and (small["similarity"] >= cut).all()
    assert small.groupby("query")["rank"].max().le(3).all()
    assert "opts" in set(read_find(run)["search"])  # every search of the run, named


def test_a_domain_query_goes_through_the_provider_chain(logo_run, serve, capsys):
    """redcorp.test's homepage and logo are served by a real HTTP server on 127.0.0.1, used
    as the proxy (stage 02's ``site`` provider, options given as ``-p`` like 02's)."""
    run, ids, _ = logo_run
    home = b'<html><head><link rel="icon" type="image/png" href="/brand/logo.png"></head></html>'
    web = serve(
        {
            "http://redcorp.test/": (200, {"Content-Type": "text/html"}, home),
            "http://redcorp.test/brand/logo.png": (200, {"Content-Type": "image/png"}, _png(RED)),
        }
    )
    options = [
        f"proxy={web.url}",
        "allow_private_hosts=true",
        "providers=[site]",
        "site_url_template=http://{domain}/",
        "max_retries=0",
        "timeout_s=5",
        "progress=false",
    ]
    argv = ["find", str(run), "REDCORP.test", "--name", "web", "--no-sheets"]
    assert cli.main([*argv, *sum((["-p", o] for o in options), [])]) == 0
    assert web.hits["http://redcorp.test/"] == 1 and web.hits["http://redcorp.test/brand/logo.png"]
    qrun = RunLayout(RunLayout(run).find_queries("web"))
    logos = pd.read_parquet(qrun.logos)
    assert logos.loc[0, ["domain", "status", "provider"]].tolist() == ["redcorp.test", "ok", "site"]
    table = pd.read_parquet(RunLayout(run).find_results("web"))
    assert set(table["query"]) == {"redcorp.test"}
    top = table.iloc[0]
    assert top["image_id"] == ids[0] and top["similarity"] > 0.95  # the same lockup, re-encoded
    assert "redcorp.test" in capsys.readouterr().out


def test_url_queries_and_bad_answers_are_recorded(logo_run, serve, capsys):
    run, ids, _ = logo_run
    web = serve(
        {
            "/img/bluebox.png": (200, {"Content-Type": "image/png"}, _png(BLUE)),
            "/img/page.png": (200, {"Content-Type": "text/html"}, b"<html>a shop page</html>"),
        }
    )
    urls = [f"{web.url}/img/bluebox.png", f"{web.url}/img/page.png", f"{web.url}/img/gone.png"]
    opts = {"allow_private_hosts": True, "max_retries": 0, "timeout_s": 5.0}
    table = find(run, urls, name="urls", top=3, fetch_options=opts, progress=False)
    out = capsys.readouterr().out
    assert set(table["query"]) == {urls[0]}
    assert table.iloc[0]["image_id"] == ids[1] and table.iloc[0]["match"] == "part~whole"
    assert web.hits["/img/bluebox.png"] == 1
    assert f"find: query {urls[1]}: failed (html" in out
    assert f"find: query {urls[2]}: failed (http_404" in out
    assert "find: 1/3 query images" in out
    qm = storage.read_manifest(RunLayout(run).find_queries("urls"), ok_only=False)
    failed = qm[qm["status"] == "failed"].set_index("origin")["error"]
    assert failed[urls[1]].startswith("html") and failed[urls[2]].startswith("http_404")
    # without allow_private_hosts the same URL is refused (stage 01's safety rule), not fetched
    find(run, urls[:1], name="private", fetch_options={"max_retries": 0}, progress=False)
    assert web.hits["/img/bluebox.png"] == 1
    assert "private" in capsys.readouterr().out
    assert read_find(run, "private").empty


@pytest.mark.parametrize(
    "query, message",
    [
        ("missing", "no such image file"),
        ("not a domain", "has_space"),
        ("-bad-.test", "is not an image file, a folder, an http(s) URL or a domain"),
        ("notes.txt", "is not an image file"),
    ],
)
def test_bad_queries_are_clear_errors(logo_run, tmp_path, capsys, query, message):
    run = logo_run[0]
    (tmp_path / "notes.txt").write_text("a text file")
    text = {"missing": str(tmp_path / "missing.png"), "notes.txt": str(tmp_path / "notes.txt")}
    text = text.get(query, query)
    assert cli.main(["find", str(run), "--name", "bad", "--", text]) == 2  # a usage error
    err = capsys.readouterr().err
    assert err.startswith("lookalike: error: query") and message in err and "Traceback" not in err
    assert not RunLayout(run).find_results("bad").exists()


def test_find_checks_its_arguments(logo_run, tmp_path):
    run, _, queries = logo_run
    assert query_kind(str(queries)) == "folder" and query_kind("https://a.example/x.png") == "url"
    assert query_kind(str(queries / "bluebox.png")) == "file"
    assert query_kind("a.example") == "domain"
    with pytest.raises(ConfigError, match="has no embeddings"):
        find(tmp_path, [str(queries)], progress=False)
    with pytest.raises(ConfigError, match="no queries"):
        find(run, [], progress=False)
    with pytest.raises(ConfigError, match="top=0"):
        find(run, [str(queries)], top=0, progress=False)
    with pytest.raises(ConfigError, match="name="):
        find(run, [str(queries)], name="../x", progress=False)


def test_a_missing_image_file_is_not_taken_for_a_domain(tmp_path):
    from lookalike.exceptions import ConfigError
    from lookalike.find import query_kind

    with pytest.raises(ConfigError, match="no such image file"):
        query_kind(str(tmp_path / "logo.png"))
    assert query_kind("example.test") == "domain"


def test_a_missing_run_or_labels_file_is_one_clear_line(logo_run, tmp_path, capsys):
    q = str(tmp_path / "nothing-needed.png")
    assert cli.main(["find", str(tmp_path / "no-such-run"), q]) == 2
    assert "no such run folder" in capsys.readouterr().err
    run = str(logo_run[0])
    assert cli.main(["find", run, "--labels", str(tmp_path / "none.csv"), q]) == 2
    err = capsys.readouterr().err
    assert "labels=" in err and "no such file" in err and "Traceback" not in err
