"""Every parameter of the five notebooks, in one schema, and the checks that use it.

:data:`SCHEMA` names each parameter with its type, allowed values or range, default, the
notebooks that take it and a one-line description. From it come the checks that
``lookalike run`` makes before any kernel starts (:func:`check`), the same checks when a
notebook runs on its own (:func:`check_notebook`, called right after its ``parameters``
cell), the demo switch (:func:`resolve_demo`), ``lookalike params`` and
``docs/parameters.md`` (:mod:`lookalike.paramdocs`). Tests keep the notebooks' parameters
cells in agreement with it.

This module imports neither TensorFlow nor any stage module: checking a config takes
milliseconds.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .exceptions import ConfigError
from .paths import DEMO_DIR, resolve

__all__ = [
    "DEMO_DOMAINS",
    "DEMO_SHOP_HOST",
    "NOTEBOOKS",
    "SCHEMA",
    "Param",
    "check",
    "check_notebook",
    "check_value",
    "problems_error",
    "default",
    "demo_reason",
    "for_notebook",
    "resolve_demo",
    "suggest",
    "validate",
]

#: The pipeline, in order. The two-digit prefix is what ``--from``/``--to`` take.
NOTEBOOKS: tuple[str, ...] = (
    "01_scrape",
    "02_fetch_logos",
    "03_embed_vgg16",
    "04_pca_kmeans",
    "05_elbow_and_inspect",
)
_ALL = NOTEBOOKS
_N1, _N2, _N3, _N4, _N5 = ((n,) for n in NOTEBOOKS)
_WEB = ("01_scrape", "02_fetch_logos")

#: The demo web's shop (``lookalike.demo.SHOP_HOST``; a test keeps the two equal).
DEMO_SHOP_HOST = "shop.test"
#: The demo's own domain list.
DEMO_DOMAINS = DEMO_DIR / "domains.csv"

# Allowed values, copied here so that checking needs no stage module (tests compare them
# with the stage modules' own tuples).
SOURCES = ("catalog", "logos", "folder")
PROVIDERS = ("site", "logodev", "brandfetch", "duckduckgo", "google", "clearbit")
PRESETS = ("auto", "logos", "photos")
POOLINGS = ("avg", "max", "gem", "flatten")
BACKGROUNDS = ("white", "black", "auto", "none")
FITS = ("pad", "stretch")
PRECISIONS = ("fp32", "bf16", "int8")
ENGINES = ("local", "ray")
ALGORITHMS = ("auto", "kmeans", "minibatch", "faiss")
EXPORT_MODES = ("none", "symlink", "copy")
METHODS = ("auto", "kmeans", "agglomerative", "similarity")
VGG16_LAYERS = tuple(
    name
    for block, n_conv in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for name in [f"block{block}_conv{i}" for i in range(1, n_conv + 1)] + [f"block{block}_pool"]
)
DEMO_CHOICES = ("auto", True, False)


@dataclass(frozen=True)
class Param:
    """One notebook parameter.

    Attributes
    ----------
    name : str
        As in the ``parameters`` cell and the config.
    kind : str
        ``bool``, ``int``, ``float``, ``str``, ``choice``, ``path``, ``url``, ``template``,
        ``list_int``, ``list_choice``, ``components`` (int >= 1 or a share in (0, 1)),
        ``demo`` (``auto``, true or false) or ``queries`` (``auto`` or a list of texts).
    default : object
        The notebooks' default; ``defaults`` overrides it per notebook.
    notebooks : tuple of str
        The notebooks whose ``parameters`` cell declares it.
    help : str
        One line: what it does.
    choices : tuple
        Allowed values (``choice``, ``list_choice``).
    low, high : float, optional
        Inclusive range of a number (or of each item of a list).
    low_open : bool
        ``low`` itself is not allowed (``timeout_s > 0``).
    nullable : bool
        ``null`` (None) is accepted: it means "the library's default" or what ``help`` says.
    needs : tuple of str
        Placeholders a ``template`` must contain, e.g. ``("{page}",)``.
    doc : str
        Longer text for ``docs/parameters.md`` (``help`` when empty).
    """

    name: str
    kind: str
    default: Any
    notebooks: tuple[str, ...]
    help: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    nullable: bool = True
    needs: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    doc: str = ""

    def default_for(self, notebook: str | None = None) -> Any:
        """The default in ``notebook`` (the first notebook's when ``None``)."""
        return self.defaults.get(notebook or self.notebooks[0], self.default)

    def allowed(self) -> str:
        """What the parameter accepts, in words (``"an integer >= 1, or null"``)."""
        text = _KIND_WORDS[self.kind](self)
        return f"{text}, or null" if self.nullable else text


def _range_words(p: Param) -> str:
    if p.low is not None and p.high is not None:
        left = "(" if p.low_open else "["
        return f" in {left}{_num(p.low)}, {_num(p.high)}]"
    if p.low is not None:
        return f" {'>' if p.low_open else '>='} {_num(p.low)}"
    return ""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _choices(p: Param) -> str:
    return ", ".join(str(c) for c in p.choices)


_KIND_WORDS = {
    "bool": lambda p: "true or false",
    "int": lambda p: "an integer" + _range_words(p),
    "float": lambda p: "a number" + _range_words(p),
    "str": lambda p: "a text",
    "choice": lambda p: f"one of {_choices(p)}",
    "path": lambda p: "a path",
    "url": lambda p: "an http:// or https:// URL",
    "template": lambda p: "an http(s) URL template with " + " and ".join(p.needs),
    "list_int": lambda p: "a list of integers" + _range_words(p) + " (one integer means [it])",
    "list_choice": lambda p: f"a list of {_choices(p)} (one name means [it])",
    "components": lambda p: "an integer >= 1, or a share of variance in (0, 1)",
    "demo": lambda p: "auto, true or false",
    "queries": lambda p: "auto, or a list of files, folders, URLs or domains (one means [it])",
}


def _p(name: str, kind: str, default: Any, notebooks: tuple[str, ...], help: str, **kw) -> Param:  # noqa: A002
    return Param(name, kind, default, notebooks, help, **kw)


# fmt: off
_PARAMS: tuple[Param, ...] = (
    # -- every notebook ------------------------------------------------------------------
    _p("run_dir", "path", "runs/demo-logos", _ALL, "output folder of this run; relative paths are from the project root", nullable=False),  # noqa: E501
    # -- 01 and 02 -----------------------------------------------------------------------
    _p("source", "choice", "logos", _WEB, "where images come from: catalog (01 scrapes), logos (02 fetches) or folder", choices=SOURCES, nullable=False),  # noqa: E501
    _p("demo", "demo", "auto", _WEB, "use the built-in offline demo web; auto: only when the inputs are the demo's own", choices=DEMO_CHOICES, nullable=False,  # noqa: E501
       doc="`auto`: serve the built-in demo web on 127.0.0.1 as the HTTP proxy only when the run's inputs are the demo's own (the catalog `http://shop.test/shoes/`, or `data/demo/domains.csv`) and no `proxy` is set; `true` insists (an error with any other input or a `proxy`); `false`: never"),  # noqa: E501
    # -- 01_scrape -----------------------------------------------------------------------
    _p("image_dir", "path", None, _N1, "for source folder: the folder of your images (searched recursively)",  # noqa: E501
       doc="with `source: folder`, the folder of images (searched recursively; read in place, nothing is copied)"),  # noqa: E501
    _p("catalog_url", "url", "http://shop.test/shoes/", _N1, "first listing page of the catalog", nullable=False),  # noqa: E501
    _p("page_url_template", "template", None, _N1, "URL of listing page n with a {page} placeholder; null follows rel next", needs=("{page}",),  # noqa: E501
       doc="e.g. `https://shop.example/shoes?page={page}`; stops at the first page that fails or adds nothing new; `null` follows the next link"),  # noqa: E501
    _p("next_selector", "str", None, _N1, "CSS selector of the next-page link, tried before rel next and pager links",  # noqa: E501
       doc="CSS selector of the next-page link; `null`: `rel=next`, then common pager links (`.pagination a.next`, `li.next > a`, `aria-label=\"Next\"`), then an HTTP `Link: rel=next` header"),  # noqa: E501
    _p("max_pages", "int", 20, _N1, "stop after this many listing pages", low=1),
    _p("item_selector", "str", None, _N1, "CSS selector of one product card; null uses the built-in defaults",  # noqa: E501
       doc="CSS selector of a product card; `null` tries typical shop markup (schema.org `Product`, `[data-product-id]`, `.product-card`, `.product-item`, `.product-tile`, `.product`, ...), then the largest group of repeated sibling elements holding an image and a link, then every image outside header/nav/footer/aside"),  # noqa: E501
    _p("image_selector", "str", None, _N1, "CSS selector of the product image inside a card; null uses the defaults",  # noqa: E501
       doc="CSS selector of the images inside a card (or on product pages); `null`: every image of the card, or the product page's gallery (`.product-gallery`, `.gallery`, ...)"),  # noqa: E501
    _p("follow_product_pages", "bool", False, _N1, "open each product page and take its gallery images too"),  # noqa: E501
    _p("max_images", "int", None, _N1, "stop after this many image URLs (null: no limit)", low=1),
    _p("concurrency", "int", 4, _WEB, "parallel downloads and product pages (01) or domains (02)", low=1, defaults={"02_fetch_logos": 8},  # noqa: E501
       doc="01: worker threads for image downloads and product pages (listing pages are read one at a time beside them); 02: domains fetched in parallel"),  # noqa: E501
    _p("delay_s", "float", 0.0, _WEB, "politeness: minimum seconds between two requests to the same host", low=0,  # noqa: E501
       doc="minimum seconds between the starts of two requests to one host (01: over all workers; 02: one site); robots.txt `Crawl-delay`, a `429` or a `Retry-After` raise it"),  # noqa: E501
    _p("timeout_s", "float", 20.0, _WEB, "the most one request may take, connection to last byte, in seconds", low=0, low_open=True, defaults={"02_fetch_logos": 10.0},  # noqa: E501
       doc="the most one request may take, connection to last byte, in seconds (a trickling server is cut off)"),  # noqa: E501
    _p("max_retries", "int", 3, _WEB, "retries for 5xx / 429 answers, with exponential back-off or Retry-After", low=0, defaults={"02_fetch_logos": 2},  # noqa: E501
       doc="retries of 5xx/429 answers and dropped connections, with exponential back-off (0.5 s, 1 s, 2 s ...) or the server's `Retry-After` (capped at 30 s)"),  # noqa: E501
    _p("respect_robots", "bool", True, _WEB, "obey robots.txt (01: every page and image; 02: each site, not the logo services)"),  # noqa: E501
    _p("user_agent", "str", "lookalike/0.1 (image-similarity research)", _WEB, "sent with every request and matched against robots.txt; add a contact"),  # noqa: E501
    _p("min_side", "int", 32, _WEB, "skip images whose shorter side is below this many pixels (icons, 1x1 trackers)", low=1, defaults={"02_fetch_logos": 16}),  # noqa: E501
    _p("max_bytes", "int", 20_000_000, _WEB, "larger downloads fail as too_large (the download stops at the cap)", low=1, defaults={"02_fetch_logos": 5_000_000}),  # noqa: E501
    _p("json_mode", "bool", False, _N1, "the listing pages return JSON instead of HTML"),
    _p("image_json_path", "str", None, _N1, "with json_mode: dotted path to the image URLs, with [*] for lists",  # noqa: E501
       doc="with `json_mode`: dotted path with `[*]` to the image URLs (`data.products[*].images.main.url`; strings, or objects with a `url`/`src`)"),  # noqa: E501
    _p("next_json_path", "str", None, _N1, "with json_mode: dotted path to the next page URL; null looks for next",  # noqa: E501
       doc="with `json_mode`: dotted path to the next page's URL (`data.pagination.next`); `null` looks for a `next`/`next_page_url`/`_links.next.href`-like key, then a `Link` header"),  # noqa: E501
    _p("proxy", "url", None, _WEB, "HTTP proxy URL for every request (the standard proxy variables also work); never replaced by the demo"),  # noqa: E501
    _p("allow_private_hosts", "bool", False, _WEB, "allow fetching from private/loopback addresses (the demo and tests turn it on)"),  # noqa: E501
    # -- 02_fetch_logos ------------------------------------------------------------------
    _p("domains_path", "path", "data/demo/domains.csv", _N2, "CSV or parquet file with one domain per row", nullable=False),  # noqa: E501
    _p("domain_column", "str", "domain", _N2, "name of the column that holds the domains"),
    _p("label_column", "str", None, _N2, "column of the domain list with a name for each domain, e.g. a company name (null: the domain)",  # noqa: E501
       doc="a column of the domain list whose value names each domain in every figure, gallery card and neighbour list (the demo list has `company`); `null`: the domain itself"),  # noqa: E501
    _p("allow_ip", "bool", False, _N2, "accept bare IP addresses as domains (otherwise invalid, reason ip_not_allowed)"),  # noqa: E501
    _p("providers", "list_choice", ["site", "logodev", "brandfetch", "duckduckgo", "google"], _N2, "logo sources, tried in this order", choices=PROVIDERS,  # noqa: E501
       doc="tried in this order until one gives a logo of at least `prefer_side` pixels; `logodev` and `brandfetch` only run with a credential; `clearbit` shut down on 1 December 2025 (kept for old runs)"),  # noqa: E501
    _p("site_url_template", "template", "https://{domain}/", _N2, "homepage URL (falls back to http and to www.)", needs=("{domain}",)),  # noqa: E501
    _p("duckduckgo_url", "template", "https://icons.duckduckgo.com/ip3/{domain}.ico", _N2, "DuckDuckGo favicon service", needs=("{domain}",)),  # noqa: E501
    _p("google_url", "template", "https://www.google.com/s2/favicons?domain={domain}&sz=256", _N2, "Google favicon service", needs=("{domain}",)),  # noqa: E501
    _p("logodev_url", "template", None, _N2, "logo.dev URL template with {domain} and {token} (null: the default)", needs=("{domain}", "{token}")),  # noqa: E501
    _p("brandfetch_url", "template", None, _N2, "Brandfetch URL template with {domain} and {client_id} (null: the default)", needs=("{domain}", "{client_id}")),  # noqa: E501
    _p("clearbit_url", "template", "https://logo.clearbit.com/{domain}", _N2, "Clearbit logo API (shut down 2025-12-01; for old runs only)", needs=("{domain}",)),  # noqa: E501
    _p("logodev_token", "str", None, _N2, "logo.dev publishable key (null: env var LOGODEV_TOKEN, else logodev is skipped)"),  # noqa: E501
    _p("brandfetch_client_id", "str", None, _N2, "Brandfetch client id (null: env var BRANDFETCH_CLIENT_ID, else skipped)"),  # noqa: E501
    _p("max_domains", "int", None, _N2, "only the first N valid domains (null: all)", low=1),
    _p("per_host_concurrency", "int", 4, _N2, "requests in flight to one host (protects the favicon services)", low=1),  # noqa: E501
    _p("service_delay_s", "float", 0.05, _N2, "minimum seconds between two requests to the same logo service", low=0),  # noqa: E501
    _p("domain_budget_s", "float", 60.0, _N2, "wall-time budget per domain, all providers together, in seconds", low=0, low_open=True),  # noqa: E501
    _p("prefer_side", "int", 48, _N2, "a smaller logo is kept, but the next providers are asked for a bigger one", low=1),  # noqa: E501
    # -- 03_embed_vgg16 ------------------------------------------------------------------
    _p("preset", "choice", "auto", _N3, "logos, photos, or auto (logos when most images came from notebook 02 or look like logos: transparency, or a flat ground and few colours)", choices=PRESETS),  # noqa: E501
    _p("batch_size", "int", 32, _N3, "images per forward pass", low=1),
    _p("image_size", "int", None, _N3, "side in pixels of the square fed to the network; null means the preset (logos 160, photos 224)", low=32,  # noqa: E501
       doc="side of the square fed to VGG16; `null`: the preset's (logos 160, photos 224); smaller is much faster but a different embedding"),  # noqa: E501
    _p("pooling", "choice", None, _N3, "max, avg or gem (512-d) or flatten; null means the preset (logos gem, photos max)", choices=POOLINGS,  # noqa: E501
       doc="`max`, `avg`, `gem` (512-d) or `flatten` (h x w x 512: 25,088-d at 224, as the original notebooks did); `null`: the preset's (logos `gem`, photos `max`)"),  # noqa: E501
    _p("layer", "choice", None, _N3, "VGG16 layer pooled; null means the preset (logos block4_pool, photos block5_pool)", choices=VGG16_LAYERS),  # noqa: E501
    _p("normalize", "bool", True, _N3, "L2-normalise each vector"),
    _p("background", "choice", None, _N3, "white, black, auto or none; null means the preset (logos auto, photos white)", choices=BACKGROUNDS,  # noqa: E501
       doc="what goes under transparent pixels and padding: `white`, `black`, `auto` (black behind light artwork), `none` (a plain RGB conversion, as the original notebooks did); `null`: the preset's"),  # noqa: E501
    _p("fit", "choice", None, _N3, "pad keeps the aspect ratio, stretch squashes to a square; null means pad", choices=FITS),  # noqa: E501
    _p("trim", "bool", None, _N3, "crop uniform margins first; null means the preset (logos on, photos off)"),  # noqa: E501
    _p("parts", "bool", None, _N3, "also embed the end squares of wide lockups; null means the preset (logos only)",  # noqa: E501
       doc="also embed the two end squares of a wide or tall logo lockup (aspect >= 1.5), at 160 px; `null`: the preset's (logos only)"),  # noqa: E501
    _p("negatives", "bool", None, _N3, "also embed the negative of light-on-dark artwork (dark-mode logos); null means the preset (logos only)",  # noqa: E501
       doc="also embed the luminance negative of light-on-dark artwork (a white logo on black), at 160 px, so it meets its usual dark-on-light version; `null`: the preset's (logos only)"),  # noqa: E501
    _p("colour_weight", "float", None, _N3, "share of the colour signature in the similarity, 0 to 1; null means the preset", low=0, high=1),  # noqa: E501
    _p("shape_weight", "float", None, _N3, "share of the shape signature (gradient orientations) in the similarity, 0 to 1; null means the preset", low=0, high=1,  # noqa: E501
       doc="share of the shape signature (HOG: gradient orientations, which ignore colour, fill and polarity) in each compared pair of whole and parts, 0 to 1; `null`: the preset's (logos 0.3, photos 0)"),  # noqa: E501
    _p("precision", "choice", "fp32", _N3, "fp32 exact, int8 fast path on ONNX Runtime, bf16, or auto (int8 on CPUs with VNNI/AMX, else fp32)", choices=(*PRECISIONS, "auto")),  # noqa: E501
    _p("workers", "int", 2, _N3, "decoding threads that run ahead of the model (engine ray: decoding tasks per model actor)", low=0),  # noqa: E501
    _p("force", "bool", False, _N3, "rebuild RUN/embeddings even when it is current; the cache still serves"),  # noqa: E501
    _p("cache_dir", "path", None, _N3, "vector cache; null: embeddings under LOOKALIKE_CACHE or ~/.cache/lookalike"),  # noqa: E501
    _p("engine", "choice", "local", _N3, "local (this process) or ray (Ray Data: decoding tasks, VGG16 in an actor pool)", choices=ENGINES,  # noqa: E501
       doc="`local` runs the network in this process; `ray` runs the images the vector cache lacks on Ray Data (decoding as CPU tasks, VGG16 in an actor pool), with the same outputs; needs `pip install -e '.[ray]'`; see docs/scaling.md"),  # noqa: E501
    _p("ray_address", "str", None, _N3, "with engine ray: null starts a local Ray, auto joins a running cluster, ray://host:10001 a remote one",  # noqa: E501
       doc="with `engine: ray`: `null` starts a local Ray on this machine (or uses one this process started), `auto` joins the cluster this machine is part of (`ray start`), `ray://host:10001` reaches a remote cluster through the Ray client"),  # noqa: E501
    _p("ray_concurrency", "int", 1, _N3, "with engine ray: model actors (each loads VGG16 once)", low=1),  # noqa: E501
    _p("ray_num_cpus", "float", 2.0, _N3, "with engine ray: CPUs per model actor, also its intra-op threads", low=0, low_open=True),  # noqa: E501
    _p("ray_num_gpus", "float", 0.0, _N3, "with engine ray: GPUs per model actor (needs the gpu extra on the workers)", low=0),  # noqa: E501
    # -- 04_pca_kmeans -------------------------------------------------------------------
    _p("pca_components", "components", 100, _N4, "int: number of components; float in (0, 1): share of variance to keep"),  # noqa: E501
    _p("whiten", "bool", False, _N4, "scale components to unit variance"),
    _p("k_values", "list_int", [3, 5, 10, 20, 50, 70, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000], _N4, "the k sweep; values >= the number of images are dropped", low=2),  # noqa: E501
    _p("algorithm", "choice", "auto", _N4, "kmeans (exact), minibatch (MiniBatchKMeans), faiss (faiss KMeans from a k-means++ start) or auto (minibatch above 5,000 images, faiss above 500,000)", choices=ALGORITHMS),  # noqa: E501
    _p("n_init", "int", 4, _N4, "exact KMeans restarts per k (the best is kept)", low=1),
    _p("random_state", "int", 0, (*_N4, *_N5), "seed for PCA, KMeans and sampling (04) and for t-SNE, UMAP and sampling (05)", low=0),  # noqa: E501
    _p("silhouette_sample", "int", 10000, _N4, "with more images, silhouette uses a seeded sample of this size", low=2),  # noqa: E501
    _p("agglomerative", "bool", True, _N4, "also cluster with average-linkage agglomerative on cosine distance"),  # noqa: E501
    _p("agglomerative_threshold", "float", None, _N4, "cosine distance to cut the tree at, e.g. 0.3; null: at each k", low=0, high=2, low_open=True),  # noqa: E501
    _p("agglomerative_max", "int", 20000, _N4, "exact dense trees (memory n squared) up to this many images; above, trees from the kNN graph (memory n k)", low=2),  # noqa: E501
    _p("similarity", "bool", True, _N4, "with the logos preset of 03, also cluster on its fused similarity"),  # noqa: E501
    _p("neighbors_k", "int", 10, _N4, "neighbours kept per image in the run's neighbour table (for 05 and queries)", low=1),  # noqa: E501
    _p("refit", "bool", False, _N4, "images added to a clustered run: false places only the new ones in the kept clusters, true re-clusters all"),  # noqa: E501
    _p("export_folders", "choice", "none", _N4, "none, symlink or copy: also write RUN/clusters/k_K/cluster_C folders", choices=EXPORT_MODES),  # noqa: E501
    # -- 05_elbow_and_inspect ------------------------------------------------------------
    _p("k", "int", None, _N5, "number of clusters to inspect; null: the recommended k", low=2),
    _p("method", "choice", "auto", _N5, "clustering to inspect: kmeans, agglomerative, similarity, or auto", choices=METHODS),  # noqa: E501
    _p("max_sheets_inline", "int", 6, _N5, "cluster sheets shown in the notebook (all written are in RUN/figures/clusters)", low=0),  # noqa: E501
    _p("max_cluster_sheets", "int", 100, _N5, "contact sheets written for at most this many clusters, the largest", low=0),  # noqa: E501
    _p("map_thumbnails", "int", 120, _N5, "at most this many thumbnails on each 2-D map", low=0),
    _p("tsne_max", "int", 2000, _N5, "t-SNE runs on a seeded sample of at most this many images", low=3),  # noqa: E501
    _p("map_max", "int", 5000, _N5, "the interactive map (UMAP) shows a seeded sample of at most this many images, every cluster in it", low=1),  # noqa: E501
    _p("dup_threshold", "float", 0.97, _N5, "cosine similarity at or above which two images are near-duplicates", low=0, high=1, low_open=True),  # noqa: E501
    _p("n_neighbours", "int", 8, _N5, "nearest neighbours listed per image in the browser and the gallery", low=1),  # noqa: E501
    _p("gallery_page_size", "int", 24, _N5, "images per cluster inside the gallery page; the rest are in page files beside it", low=1),  # noqa: E501
    _p("gallery_k_values", "list_int", None, _N5, "k values in the HTML gallery; null: every k of every method", low=2),  # noqa: E501
    _p("find_queries", "queries", "auto", _N5, "images to find look-alikes of in the run: files, folders, URLs or domains; auto: the demo's queries in a demo run",  # noqa: E501
       doc="image files, folders of images, http(s) image URLs and domains (their logo through the provider chain of 02, with its defaults), in any mix; the first 3 hits of each query are shown, all of them kept in the run and shown in the gallery's Find section, with a contact sheet per query (`lookalike find RUN QUERY...` does the same at the command line); `auto`: in a run of the demo, its own query images in `data/demo/queries`, else none; `null` or `[]`: none"),  # noqa: E501
    _p("find_top", "int", 10, _N5, "hits per query image in the Find section", low=1),
)
# fmt: on

#: Every parameter by name, in the order of the notebooks.
SCHEMA: dict[str, Param] = {p.name: p for p in _PARAMS}


def for_notebook(notebook: str) -> list[Param]:
    """The parameters ``notebook`` declares, in schema order."""
    return [p for p in _PARAMS if notebook in p.notebooks]


def default(name: str, notebook: str | None = None) -> Any:
    """The default of parameter ``name`` (in ``notebook``, where defaults differ)."""
    return SCHEMA[name].default_for(notebook)


def suggest(word: str, choices: Sequence[Any]) -> str:
    """``" (did you mean 'folder'?)"`` for the closest of ``choices``, or ``""``."""
    names = [str(c) for c in choices]
    close = difflib.get_close_matches(str(word).lower(), names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _show(value: Any) -> str:
    """A value as a user writes it in YAML: ``null``, ``true``, ``'abc'``, ``[1, 2]``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


# -- one value --------------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _in_range(p: Param, v: float) -> bool:
    if p.low is not None and (v <= p.low if p.low_open else v < p.low):
        return False
    return p.high is None or v <= p.high


def _check_url(v: Any, needs: tuple[str, ...] = ()) -> bool:
    if not isinstance(v, str):
        return False
    parts = urlsplit(v.replace("{", "").replace("}", ""))
    return parts.scheme in ("http", "https") and bool(parts.netloc) and all(n in v for n in needs)


def _list_value(p: Param, v: Any) -> tuple[Any, str, str]:
    """(normalised list, what is wrong, did-you-mean) for a list parameter."""
    items = list(v) if isinstance(v, list | tuple) else [v]  # one value means a list of one
    if not items:
        return items, "an empty list; ", ""
    if p.kind == "list_int":
        bad = [x for x in items if not (_is_int(x) and _in_range(p, x))]
        return items, (f"{_show(bad[0])} in the list; " if bad else ""), ""
    bad = [x for x in items if x not in p.choices]
    if bad:
        return items, f"{_show(bad[0])} in the list; ", suggest(bad[0], p.choices)
    return items, "", ""


def _queries_value(v: Any) -> tuple[Any, bool]:
    """``auto``, or the queries as a list of texts (one text means a list of one)."""
    if v == "auto":
        return v, True
    items = list(v) if isinstance(v, list | tuple) else [v]
    ok = all(isinstance(x, str | os.PathLike) and str(x).strip() for x in items)
    return ([str(x) for x in items] if ok else v), ok


def check_value(p: Param, v: Any) -> tuple[Any, str | None]:
    """Normalise and check one value: ``(value, None)`` or ``(value, problem line)``."""
    if v is None:
        return v, None if p.nullable else f"{p.name}=null: use {p.allowed()}"
    hint = ""
    if isinstance(v, str) and v.strip().lower() in ("none", "null", "~") and p.nullable:
        hint = " (for no value write null, not None)"
    given, ok, what, close = v, True, "", ""
    if p.kind in ("list_int", "list_choice"):
        v, what, close = _list_value(p, v)
        ok, what = not what, (what if isinstance(given, list | tuple) else "")
    elif p.kind == "bool":
        ok = isinstance(v, bool)
    elif p.kind == "int":
        ok = _is_int(v) and _in_range(p, v)
    elif p.kind == "float":
        ok = _is_number(v) and _in_range(p, v)
    elif p.kind in ("str", "path"):
        ok = isinstance(v, str | os.PathLike) and bool(str(v).strip())
    elif p.kind == "demo":
        ok = v == "auto" or isinstance(v, bool)
        close = "" if ok else suggest(v, ["auto", "true", "false"])
    elif p.kind == "choice":
        ok = isinstance(v, str) and v in p.choices
        close = "" if ok else suggest(v, p.choices)
    elif p.kind in ("url", "template"):
        ok = _check_url(v, p.needs)
    elif p.kind == "queries":
        v, ok = _queries_value(v)
    elif p.kind == "components":
        ok = (_is_int(v) and v >= 1) or (isinstance(v, float) and 0 < v < 1)
    if ok:
        return v, None
    return v, f"{p.name}={_show(given)}: {what}use {p.allowed()}{close}{hint}"


# -- a whole config ---------------------------------------------------------------------------


def _effective(params: Mapping[str, Any], name: str) -> Any:
    return params[name] if name in params else SCHEMA[name].default_for()


def demo_reason(params: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the run's inputs are the demo's own, and why (in words).

    The inputs are the demo's own when no ``proxy`` is set and either ``source`` is
    ``catalog`` with every URL on the demo shop (``http://shop.test/...``), or ``source``
    is ``logos`` with ``domains_path`` naming ``data/demo/domains.csv``.
    """
    get = lambda name: _effective(params, name)  # noqa: E731
    source = get("source")
    if get("proxy"):
        return False, f"proxy={_show(get('proxy'))} is set"
    if source == "catalog":
        for name in ("catalog_url", "page_url_template"):
            url = get(name)
            if url is not None and (urlsplit(str(url)).hostname or "") != DEMO_SHOP_HOST:
                return False, f"{name}={_show(url)} is not the demo shop (http://{DEMO_SHOP_HOST}/)"
        return True, f"the catalog is the demo shop http://{DEMO_SHOP_HOST}/"
    if source == "logos":
        path = get("domains_path")
        if path is not None and _same_file(resolve(path), DEMO_DOMAINS):
            return True, "domains_path is the demo's data/demo/domains.csv"
        return False, f"domains_path={_show(path)} is your own domain list"
    return False, f"source={_show(source)} makes no web requests"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def _demo_problem(params: Mapping[str, Any]) -> str | None:
    if _effective(params, "demo") is not True:
        return None
    is_demo, why = demo_reason(params)
    if is_demo or _effective(params, "source") == "folder":
        return None
    if _effective(params, "proxy"):
        return (
            f"demo=true: {why}, but the demo would replace it with the built-in demo web; "
            "leave demo out (auto) or set demo: false to use your proxy"
        )
    return (
        f"demo=true: {why}, and the built-in demo web serves only its own shop and "
        "data/demo/domains.csv (every other request would fail); leave demo out (auto) "
        "or set demo: false"
    )


def resolve_demo(params: Mapping[str, Any]) -> bool:
    """Decide whether the run uses the built-in demo web.

    ``demo: auto`` (the default) is on only when the inputs are the demo's own (see
    :func:`demo_reason`); ``demo: true`` with any other input or with a ``proxy`` is an
    error, so a user's URL, domain list or proxy is never sent to the demo.

    Parameters
    ----------
    params : mapping
        Parameter values; names left out take the schema's defaults.

    Returns
    -------
    bool

    Raises
    ------
    ConfigError
        ``demo: true`` together with inputs that are not the demo's.
    """
    problem = _demo_problem(params)
    if problem:
        raise ConfigError(problem)
    demo = _effective(params, "demo")
    if demo == "auto":
        return demo_reason(params)[0]
    return bool(demo) and _effective(params, "source") != "folder"


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _path_problems(params: Mapping[str, Any], notebooks: Sequence[str]) -> list[str]:
    """Paths that must exist for the selected notebooks (and a run_dir that is a file)."""
    out = []
    run_dir = params.get("run_dir")
    if isinstance(run_dir, str | os.PathLike):
        blocker = _first_existing(resolve(run_dir))
        if not blocker.is_dir():
            out.append(
                f"run_dir={_show(str(run_dir))}: {blocker} is a file; "
                "give a folder (it is created if missing)"
            )
    source = _effective(params, "source")
    wanted = []
    if "01_scrape" in notebooks and source == "folder":
        wanted.append(("image_dir", "a folder of your images", Path.is_dir))
    if "02_fetch_logos" in notebooks and source == "logos":
        wanted.append(("domains_path", "a CSV or parquet file of domains", Path.is_file))
    for name, what, test in wanted:
        value = _effective(params, name)
        if value is None:
            out.append(f"{name}=null: source={_show(source)} needs {name} set to {what}")
        elif isinstance(value, str | os.PathLike) and not test(resolve(value)):
            state = "not found" if not resolve(value).exists() else "the wrong kind of file"
            out.append(f"{name}={_show(str(value))}: {resolve(value)} {state}; set it to {what}")
    return out


def validate(
    params: Mapping[str, Any], *, notebooks: Sequence[str] = NOTEBOOKS
) -> tuple[dict[str, Any], list[str]]:
    """Check a whole config; report every problem at once.

    Parameters
    ----------
    params : mapping
        Name -> value, as read from YAML (a config file, ``-p`` values).
    notebooks : sequence of str
        The notebooks that will run: paths are checked only for these.

    Returns
    -------
    values : dict
        ``params`` normalised (``k_values: 5`` becomes ``[5]``).
    problems : list of str
        One line per problem: the parameter, the wrong value, what is allowed and, for
        names and choices, a "did you mean".
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in params.items():
        p = SCHEMA.get(name)
        if p is None:
            hint = suggest(name, list(SCHEMA)) or " (`lookalike params` lists them all)"
            problems.append(f"{name}: unknown parameter{hint}")
            continue
        values[name], problem = check_value(p, value)
        if problem:
            problems.append(problem)
    if not problems:  # the checks below need well-typed values
        problems += _path_problems(values, notebooks)
        demo = _demo_problem(values)
        problems += [demo] if demo else []
    return values, problems


def check(params: Mapping[str, Any], *, notebooks: Sequence[str] = NOTEBOOKS) -> dict[str, Any]:
    """:func:`validate`, raising :class:`ConfigError` with every problem, one per line."""
    values, problems = validate(params, notebooks=notebooks)
    if problems:
        raise problems_error(problems)
    return values


def problems_error(problems: Sequence[str]) -> ConfigError:
    """One :class:`ConfigError` for a list of problem lines (one line when there is one)."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(
        f"{len(problems)} problems in the parameters:\n" + "\n".join(f"  {x}" for x in problems)
    )


def check_notebook(notebook: str, namespace: MutableMapping[str, Any]) -> dict[str, Any]:
    """Check a notebook's parameters in its own namespace (call it after the parameters cell).

    The same checks as ``lookalike run`` makes, so a notebook run with papermill or top to
    bottom in JupyterLab fails at once, with the same lines. Normalised values are written
    back (``k_values = 5`` becomes ``[5]``), and ``demo`` becomes the resolved ``True`` or
    ``False`` (see :func:`resolve_demo`).

    Parameters
    ----------
    notebook : str
        e.g. ``"03_embed_vgg16"``.
    namespace : mutable mapping
        The notebook's ``globals()``.

    Returns
    -------
    dict
        The notebook's parameters after the check.

    Examples
    --------
    >>> from lookalike import params  # doctest: +SKIP
    >>> params.check_notebook("03_embed_vgg16", globals())  # doctest: +SKIP
    """
    if notebook not in NOTEBOOKS:
        raise ConfigError(f"unknown notebook {notebook!r}{suggest(notebook, NOTEBOOKS)}")
    given = {p.name: namespace[p.name] for p in for_notebook(notebook) if p.name in namespace}
    values = check(given, notebooks=[notebook])
    if "demo" in values:
        values["demo"] = resolve_demo(values)
        if values["demo"]:
            print(f"demo: on, {demo_reason(values)[1]}: requests go to the built-in demo web")
    namespace.update(values)
    return values


def given(**options: Any) -> dict[str, Any]:
    """The options that are set: ``None`` leaves the library's default in place.

    Notebooks pass their parameters through this, so a parameter left at ``None`` means
    exactly what the library function's own default means.
    """
    return {k: v for k, v in options.items() if v is not None}
