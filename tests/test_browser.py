"""The notebook's browser: its callbacks without a browser, and the widgets driving them."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from PIL import Image
from synthetic_run import explain_neighbours, make_run

from lookalike import storage
from lookalike.browser import ClusterBrowser
from lookalike.duplicates import N_NEIGHBOURS
from lookalike.exceptions import ConfigError
from lookalike.paths import RunLayout


@pytest.fixture
def clustered_run(tmp_path):
    return make_run(tmp_path)


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def test_browser_callbacks_without_a_browser(clustered_run):
    b = ClusterBrowser(clustered_run, k=3, n_neighbours=4, thumb=40)
    assert b.k_options() == [2, 3, 4, 5]
    opts = b.cluster_options()
    assert [c for _, c in opts] == [0, 1, 2] and "images, cohesion" in opts[0][0]
    first = b.grid_png
    assert _png_size(first)[1] > 40
    members = b.members(3, 0)
    assert members["rank"].tolist() == list(range(len(members)))
    assert b.image_id == members["image_id"].iloc[0]  # the central image is picked

    b.on_k({"new": 5})
    assert b.k == 5 and b.cluster == 0 and len(b.cluster_options()) == 5
    b.on_cluster({"new": 4})
    assert b.cluster == 4 and b.grid_png != first
    n_members = len(b.members(5, 4))
    w, h = _png_size(b.grid_png)
    assert h == 22 + ((n_members + 7) // 8) * (40 + 14 + 4) + 4  # a label under each

    dup = (
        storage.read_manifest(clustered_run).set_index("path").loc["images/logo 18.png", "image_id"]
    )
    b.on_image({"new": dup})
    nb = b.neighbours_table
    assert len(nb) == 4 and dup not in set(nb["image_id"])
    assert Path(nb["path"].iloc[0]).name == "logo 0.png"  # its near-duplicate comes first
    assert nb["label"].iloc[0] == "0" and nb["n_origins"].iloc[0] == 1  # the origin's name
    assert "0 |" not in nb["origins"].iloc[0]
    assert nb["distance"].is_monotonic_increasing and nb["distance"].iloc[0] < 0.01
    np.testing.assert_allclose(nb["similarity"], 1 - nb["distance"])
    assert _png_size(b.neighbours_png)[0] >= 5 * 44
    with pytest.raises(ConfigError, match="not in"):
        b.neighbours("f" * 64)
    with pytest.raises(ConfigError, match=r"available k: \[2, 3, 4, 5\]"):
        ClusterBrowser(clustered_run, k=9)


def test_browser_widgets_drive_the_same_callbacks(clustered_run):
    b = ClusterBrowser(clustered_run, method="agglomerative", n_neighbours=3, thumb=32)
    ui = b.widget()
    assert type(ui).__name__ == "VBox"
    w = b._w
    assert w["k"].options == (2, 3, 4, 5) and w["k"].value == 2
    w["k"].value = 4  # as if picked in the notebook
    assert b.k == 4 and [c for _, c in w["cluster"].options] == [0, 1, 2, 3]
    w["cluster"].value = 2
    assert b.cluster == 2 and w["grid"].value == b.grid_png
    picked = w["image"].options[-1][1]
    w["image"].value = picked
    assert b.image_id == picked and w["neighbours"].value == b.neighbours_png
    html = BeautifulSoup(w["table"].value, "html.parser")
    assert len(html.find_all("tr")) == 1 + 3  # header + 3 neighbours with distances
    assert "distance" in w["table"].value


def test_browser_n_neighbours_none_is_the_default(clustered_run):
    b = ClusterBrowser(clustered_run, k=3)
    assert b.n_neighbours == N_NEIGHBOURS == 8 and len(b.neighbours_table) == 8


def test_browser_neighbours_say_why_they_matched(clustered_run):
    b = ClusterBrowser(clustered_run, k=3, n_neighbours=3)
    nb = b.neighbours(b.image_id)
    assert (nb["match"] == "whole-whole").all() and (nb["colour_gain"] == 0).all()
    assert (nb["why"] == "whole ↔ whole").all()  # a run without parts or colour
    stored = explain_neighbours(clustered_run, b.image_id, [("part-whole", 0.031),
                                                            ("whole-part", -0.012)])  # fmt: skip
    b.widget()  # the notebook's table of the picked image's neighbours
    nb = b.neighbours_table
    assert nb["image_id"].tolist() == stored["neighbor_id"].tolist()[:3]
    assert nb["match"].tolist() == ["part-whole", "whole-part", "whole-whole"]
    np.testing.assert_allclose(nb["colour_gain"], [0.031, -0.012, 0.0], atol=1e-7)
    assert nb["why"].tolist() == [
        "icon of this ↔ whole of that, +0.03 colour",
        "whole of this ↔ icon of that, -0.01 colour",
        "whole ↔ whole",
    ]
    html = BeautifulSoup(b._w["table"].value, "html.parser")
    assert html.find("th", string="why") is not None
    cells = [td.get_text() for td in html.find_all("td")]
    assert "icon of this ↔ whole of that, +0.03 colour" in cells
    # an older table without the reasons: the same neighbours, the reason left blank
    old = pd.read_parquet(RunLayout(clustered_run).neighbors).iloc[:, :4]
    storage.write_table(old, RunLayout(clustered_run).neighbors)
    nb = b.neighbours(b.image_id)
    assert nb["image_id"].tolist() == stored["neighbor_id"].tolist()[:3]
    assert nb["match"].isna().all() and nb["colour_gain"].isna().all()
    assert (nb["why"] == "").all()
