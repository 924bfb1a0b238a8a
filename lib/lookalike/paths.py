"""Every path lookalike uses, derived from one anchor (the project root)."""

from __future__ import annotations

import os
from pathlib import Path

#: The workspace root: ``lib/lookalike/paths.py`` -> two levels up from ``lib``.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
DATA_DIR = PROJECT_ROOT / "data"
DEMO_DIR = DATA_DIR / "demo"
CONFIGS_DIR = PROJECT_ROOT / "configs"
RUNS_DIR = PROJECT_ROOT / "runs"

#: Name of the Jupyter kernel registered from the project's virtualenv.
KERNEL_NAME = "lookalike"


def resolve(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as an absolute path; relative paths are taken from the project root.

    Notebooks run with their own folder as working directory in JupyterLab and with the
    caller's in papermill, so every relative path in a parameter means "from the root".
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    return p if p.is_absolute() else (PROJECT_ROOT / p)


def shown(path: str | os.PathLike[str], run: str | os.PathLike[str] | None = None) -> str:
    """``path`` as reports and summary lines show it: no path of this machine.

    Relative to the run folder ``run`` when inside it, else to the project root when inside
    that, else with the home folder as ``~``; other paths (and non-paths) unchanged.

    Examples
    --------
    >>> shown(PROJECT_ROOT / "runs" / "demo" / "figures", PROJECT_ROOT / "runs" / "demo")
    'figures'
    >>> shown(DATA_DIR / "demo")
    'data/demo'
    """
    p = Path(os.fspath(path))
    if not p.is_absolute():  # relative, or not a path (a URL, a domain): as given
        return os.fspath(path)
    anchors = [resolve(run)] if run is not None else []
    for anchor in [*anchors, PROJECT_ROOT]:
        if p.is_relative_to(anchor):
            return p.relative_to(anchor).as_posix()
    home = Path.home()
    if p.is_relative_to(home):
        return "~/" + p.relative_to(home).as_posix()
    return p.as_posix()


def default_cache_dir() -> Path:
    """Shared cache for embeddings and weights: ``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``."""
    env = os.environ.get("LOOKALIKE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lookalike"


def vector_cache_dir() -> Path:
    """The shared embedding cache, ``default_cache_dir() / "embeddings"`` (not a run folder)."""
    return default_cache_dir() / "embeddings"


class RunLayout:
    """Every file and folder of one run, named in one place.

    The run folder is resolved once (:func:`resolve`); every stage, notebook and test takes
    its paths from here, so no other module spells a run file's name.

    Parameters
    ----------
    run_dir : str or Path
        The run folder; relative paths are taken from the project root.

    Examples
    --------
    >>> run = RunLayout("runs/demo-logos")  # doctest: +SKIP
    >>> run.manifest  # doctest: +SKIP
    PosixPath('/…/runs/demo-logos/images.parquet')
    """

    # Names inside RUN/embeddings/ (stage 03 writes them into a temporary folder first,
    # so they are also needed relative to another folder).
    VECTORS = "vectors.npy"
    IDS = "ids.parquet"
    EMBED_FAILED = "failed.parquet"
    EMBED_STATE = "state.json"
    PARTS = "parts.npy"
    PART_MASK = "part_mask.npy"
    COLOUR = "colour.npy"
    SHAPE = "shape.npy"
    SIMILARITY_STATE = "similarity.json"

    def __init__(self, run_dir: str | os.PathLike[str] | RunLayout):
        self.root: Path = run_dir.root if isinstance(run_dir, RunLayout) else resolve(run_dir)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    # -- inputs (stages 01 and 02) and the manifest -----------------------------------------
    @property
    def manifest(self) -> Path:
        """``images.parquet``: one row per image origin; stages 03 to 05 read it."""
        return self.root / "images.parquet"

    @property
    def scrape(self) -> Path:
        """``scrape.parquet``: one row per image URL found by 01."""
        return self.root / "scrape.parquet"

    @property
    def scrape_pages(self) -> Path:
        """``scrape_pages.parquet``: one row per page read by 01."""
        return self.root / "scrape_pages.parquet"

    @property
    def images_dir(self) -> Path:
        """``images/``: downloaded catalog images, named by content hash."""
        return self.root / "images"

    @property
    def logos(self) -> Path:
        """``logos.parquet``: one row per domain (02)."""
        return self.root / "logos.parquet"

    @property
    def logos_summary(self) -> Path:
        """``logos_summary.csv``: 02's summary per provider and reason."""
        return self.root / "logos_summary.csv"

    @property
    def logos_dir(self) -> Path:
        """``logos/``: the fetched logos as PNG, named by content hash."""
        return self.root / "logos"

    @property
    def logo_originals(self) -> Path:
        """``logos/original/``: each logo's bytes as downloaded (SVG, ICO, ...)."""
        return self.logos_dir / "original"

    # -- stage 03 ----------------------------------------------------------------------------
    @property
    def embeddings_dir(self) -> Path:
        """``embeddings/``: stage 03's folder, swapped in whole when it is rebuilt."""
        return self.root / "embeddings"

    @property
    def vectors(self) -> Path:
        """``embeddings/vectors.npy``: float32, shape (n_images, dim)."""
        return self.embeddings_dir / self.VECTORS

    @property
    def ids(self) -> Path:
        """``embeddings/ids.parquet``: row i names vector i."""
        return self.embeddings_dir / self.IDS

    @property
    def embed_failed(self) -> Path:
        """``embeddings/failed.parquet``: images that could not be embedded."""
        return self.embeddings_dir / self.EMBED_FAILED

    @property
    def embed_state(self) -> Path:
        """``embeddings/state.json``: what the vectors were made from (resume)."""
        return self.embeddings_dir / self.EMBED_STATE

    @property
    def parts(self) -> Path:
        """``embeddings/parts.npy``: the lockup parts' vectors, (n_images, 2, dim)."""
        return self.embeddings_dir / self.PARTS

    @property
    def part_mask(self) -> Path:
        """``embeddings/part_mask.npy``: bool, (n_images, 2), which parts exist."""
        return self.embeddings_dir / self.PART_MASK

    @property
    def colour(self) -> Path:
        """``embeddings/colour.npy``: colour signatures, (n_images, bins**3)."""
        return self.embeddings_dir / self.COLOUR

    @property
    def shape(self) -> Path:
        """``embeddings/shape.npy``: uint8 shape signatures, (n_images, 3, SHAPE_DIM): the
        whole, then the two end squares (zeros where absent)."""
        return self.embeddings_dir / self.SHAPE

    @property
    def similarity_state(self) -> Path:
        """``embeddings/similarity.json``: the similarity settings the extras were made with."""
        return self.embeddings_dir / self.SIMILARITY_STATE

    # -- stage 04 ----------------------------------------------------------------------------
    @property
    def metrics(self) -> Path:
        """``metrics.csv``: one row per method and k."""
        return self.root / "metrics.csv"

    @property
    def clusters(self) -> Path:
        """``clusters.parquet``: one row per image, method and k."""
        return self.root / "clusters.parquet"

    @property
    def pca(self) -> Path:
        """``pca.npz``: the reduced vectors and the PCA that made them."""
        return self.root / "pca.npz"

    @property
    def cluster_state(self) -> Path:
        """``cluster_params.json``: what 04's outputs were made from (resume)."""
        return self.root / "cluster_params.json"

    @property
    def neighbors(self) -> Path:
        """``neighbors.parquet``: each image's nearest neighbours."""
        return self.root / "neighbors.parquet"

    @property
    def additions(self) -> Path:
        """``additions.csv``: how many new images joined each cluster, last time 04 added some."""
        return self.root / "additions.csv"

    @property
    def export_dir(self) -> Path:
        """``clusters/``: optional per-cluster folders of links or copies."""
        return self.root / "clusters"

    # -- the run's similarity space (stage 04 and find) -----------------------------------
    @property
    def index_dir(self) -> Path:
        """``index/``: the run's similarity space, kept for queries and added images."""
        return self.root / "index"

    @property
    def whitening(self) -> Path:
        """``index/whitening.npz``: the PCA whitening of the fused similarity."""
        return self.index_dir / "whitening.npz"

    @property
    def whitening_state(self) -> Path:
        """``index/whitening.json``: what the whitening was fitted with (stage 04 writes it)."""
        return self.index_dir / "whitening.json"

    def index_file(self, kind: str) -> Path:
        """``index/<kind>.faiss``: a faiss index (``wholes``, ``parts``)."""
        return self.index_dir / f"{kind}.faiss"

    @property
    def calibration(self) -> Path:
        """``index/calibration.npy``: sorted similarities of random pairs of the run's images."""
        return self.index_dir / "calibration.npy"

    @property
    def index_state(self) -> Path:
        """``index/state.json``: what the files of ``index/`` were made from."""
        return self.index_dir / "state.json"

    # -- find (lookalike find) -------------------------------------------------------------
    @property
    def find_dir(self) -> Path:
        """``find/``: the results of ``lookalike find``, one table per search name."""
        return self.root / "find"

    def find_results(self, name: str) -> Path:
        """``find/<name>.parquet``: one row per query and hit."""
        return self.find_dir / f"{name}.parquet"

    def find_csv(self, name: str) -> Path:
        """``find/<name>.csv``: the same rows as CSV, on request."""
        return self.find_dir / f"{name}.csv"

    def find_queries(self, name: str) -> Path:
        """``find/<name>/``: the query images' own run folder (manifest and embeddings)."""
        return self.find_dir / name

    def find_sheets_dir(self, name: str) -> Path:
        """``figures/find/<name>/``: one contact sheet per query."""
        return self.figures_dir / "find" / name

    # -- stage 05 and the runner -----------------------------------------------------------
    @property
    def figures_dir(self) -> Path:
        """``figures/``: every figure the notebooks save."""
        return self.root / "figures"

    def figure(self, name: str) -> Path:
        """``figures/<name>``."""
        return self.figures_dir / name

    @property
    def cluster_sheets_dir(self) -> Path:
        """``figures/clusters/``: one contact sheet per cluster."""
        return self.figures_dir / "clusters"

    @property
    def map2d(self) -> Path:
        """``map2d.parquet``: the 2-D map of 05 and the gallery (``image_id``, ``x``, ``y``;
        UMAP of a seeded sample of the PCA vectors, :func:`lookalike.mapview.map_coords`)."""
        return self.root / "map2d.parquet"

    @property
    def map2d_state(self) -> Path:
        """``map2d.json``: what ``map2d.parquet`` was computed from (reused while current)."""
        return self.root / "map2d.json"

    @property
    def near_duplicates(self) -> Path:
        """``near_duplicates.csv``: groups of near-identical images."""
        return self.root / "near_duplicates.csv"

    @property
    def report_dir(self) -> Path:
        """``report/``: rendered notebooks and the gallery."""
        return self.root / "report"

    @property
    def gallery(self) -> Path:
        """``report/gallery.html``: the offline gallery."""
        return self.report_dir / "gallery.html"

    @property
    def gallery_files(self) -> Path:
        """``report/gallery_files/``: thumbnails of a large gallery."""
        return self.report_dir / "gallery_files"

    @property
    def gallery_pages(self) -> Path:
        """``report/gallery_pages/``: later pages of the gallery's clusters, as scripts
        (``<method>-k<k>.js``) so that they load from file:// with no server."""
        return self.report_dir / "gallery_pages"

    @property
    def gallery_plotlyjs(self) -> Path:
        """``report/gallery_files/plotly.min.js``: plotly.js for the gallery's map, beside a
        gallery whose thumbnails are files (an inlined gallery inlines it too)."""
        return self.gallery_files / "plotly.min.js"

    def report(self, notebook: str) -> Path:
        """``report/<notebook>.html``."""
        return self.report_dir / f"{notebook}.html"

    @property
    def notebooks_dir(self) -> Path:
        """``notebooks/``: the executed notebooks of ``lookalike run``."""
        return self.root / "notebooks"

    def executed_notebook(self, notebook: str) -> Path:
        """``notebooks/<notebook>.ipynb``."""
        return self.notebooks_dir / f"{notebook}.ipynb"

    @property
    def params(self) -> Path:
        """``params.yaml``: the merged parameters of the last ``lookalike run``."""
        return self.root / "params.yaml"

    @property
    def log(self) -> Path:
        """``run.log``: the runner's plain-text log."""
        return self.root / "run.log"

    @staticmethod
    def journal(table: Path) -> Path:
        """The append-only journal beside a table: ``.<name>.journal``."""
        return table.with_name(f".{table.name}.journal")

    def image_path(self, path: str) -> Path:
        """Absolute path of a manifest ``path`` entry (relative entries are inside the run)."""
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    def label(self) -> str:
        """The run folder as reports show it: relative to the project root when inside it
        (``runs/demo-logos``), else its name; a shared report shows no path of this machine."""
        if self.root.is_relative_to(PROJECT_ROOT):
            return self.root.relative_to(PROJECT_ROOT).as_posix()
        return self.root.name

    def shown(self, path: str | os.PathLike[str]) -> str:
        """``path`` as reports show it, relative to the run folder when inside it
        (:func:`shown`)."""
        return shown(path, self.root)

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` relative to the run folder when it is inside it, else absolute (POSIX)."""
        p = Path(path)
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return p.as_posix()
