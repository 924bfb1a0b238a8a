"""Write the five pipeline notebooks from the cell sources below (outputs stripped).

The notebooks in ``notebooks/`` are the source users open and edit; this script is how
they were first laid out, kept so that a structural change touches all five the same
way. Run: ``python scripts/make_notebooks.py`` (it overwrites ``notebooks/*.ipynb``).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]

COMMON = '''\
run_dir = "runs/demo-logos"  # output folder of this run; relative paths are from the project root
'''

SOURCE = '''\
source = "logos"  # where images come from: "catalog" (01 scrapes), "logos" (02 fetches) or "folder"
'''

SETUP = """\
import lookalike
from lookalike import paths

run = paths.resolve(run_dir)
run.mkdir(parents=True, exist_ok=True)
print(f"run folder: {run}")"""


def md(text: str):
    return new_markdown_cell(text.strip())


def code(text: str, *, tags: list[str] | None = None):
    cell = new_code_cell(text.strip())
    if tags:
        cell.metadata["tags"] = tags
    return cell


def params(text: str):
    return code(text, tags=["parameters"])


NB01 = [
    md("""
# 01 · Scrape a catalog

Collects product images from a paginated web catalog into the run's image manifest
(`RUN/images.parquet`). It reads each listing page, takes the image of every product
(including lazy-loaded `data-src` and `srcset` images), optionally opens each product page
for its gallery, and downloads each image once, politely (robots.txt, a per-host delay,
retries with back-off).

With `source: folder` this notebook indexes your own folder of images instead (nothing is
copied or moved). With `source: logos` there is nothing to do here: `02_fetch_logos`
gathers the images.

With `demo = True` the notebook starts the built-in demo web on 127.0.0.1 and sends every
request through it as an HTTP proxy, so the default URLs below reach the demo shop offline.
"""),
    params(COMMON + SOURCE + '''\
demo = True  # serve the built-in demo web on 127.0.0.1 and use it as the HTTP proxy
image_dir = None  # for source "folder": the folder of your images (searched recursively)
catalog_url = "http://shop.test/shoes/"  # first listing page of the catalog
page_url_template = None  # e.g. https://shop.example/shoes?page={page}; None follows rel=next
next_selector = None  # CSS selector of the next-page link when there is no rel="next"
max_pages = 20  # stop after this many listing pages
item_selector = None  # CSS selector of one product card; None uses the built-in defaults
image_selector = None  # CSS selector of the product image inside a card; None uses the defaults
follow_product_pages = False  # open each product page and take its gallery images too
max_images = None  # stop after this many image URLs (None: no limit)
concurrency = 4  # parallel downloads (the per-host delay still applies)
delay_s = 0.0  # politeness: minimum seconds between two requests to the same host
timeout_s = 20.0  # seconds before a request is abandoned
max_retries = 3  # retries for 5xx / 429 answers, with exponential back-off
respect_robots = True  # obey the site's robots.txt
user_agent = "lookalike/0.1 (image-similarity research)"  # sent with every request; add contact info
min_side = 32  # skip images whose shorter side is below this many pixels (icons, pixels)
json_mode = False  # the listing pages return JSON instead of HTML
image_json_path = None  # with json_mode: dotted path to image URLs, e.g. "data.items[*].img.url"
proxy = None  # HTTP proxy URL for every request (the standard proxy env vars also work)
allow_private_hosts = False  # allow fetching from private/loopback addresses (demo and tests)
'''),
    code(SETUP),
    md("""
## Gather the images

The stage resumes: images already downloaded (their rows in `RUN/scrape.parquet` and their
files under `RUN/images/`) are not fetched again.
"""),
    code('''\
from lookalike import io, scrape

if source == "catalog":
    server = None
    if demo:
        from lookalike import demo as demo_web

        server = demo_web.serve()
        proxy, allow_private_hosts = server.url, True
        print(f"demo web serving on {server.url} (used as HTTP proxy)")
    try:
        scraped = scrape.scrape_catalog(
            catalog_url,
            run,
            page_url_template=page_url_template,
            next_selector=next_selector,
            max_pages=max_pages,
            item_selector=item_selector,
            image_selector=image_selector,
            follow_product_pages=follow_product_pages,
            max_images=max_images,
            concurrency=concurrency,
            delay_s=delay_s,
            timeout_s=timeout_s,
            max_retries=max_retries,
            respect_robots=respect_robots,
            user_agent=user_agent,
            min_side=min_side,
            json_mode=json_mode,
            image_json_path=image_json_path,
            proxy=proxy,
            allow_private_hosts=allow_private_hosts,
        )
    finally:
        if server is not None:
            server.stop()
    manifest = io.merge_manifest(run, scrape.to_image_manifest(scraped))
elif source == "folder":
    manifest = io.merge_manifest(run, io.index_folder(image_dir))
else:
    manifest = None
    print(f"source={source!r}: nothing to scrape; 02_fetch_logos gathers the images.")'''),
    code('''\
if manifest is not None:
    counts = manifest.groupby(["source", "status"]).size().rename("images")
    display(counts.to_frame())'''),
    md("""
## A first look

A contact sheet of the first images, saved under `RUN/figures/`.
"""),
    code('''\
from IPython.display import Image as ShowImage

from lookalike import inspect

if manifest is not None and (manifest["status"] == "ok").any():
    ok = manifest[manifest["status"] == "ok"].head(48)
    sheet = inspect.contact_sheet(
        [io.image_abspath(run, p) for p in ok["path"]],
        run / "figures" / "01_sample.png",
        title=f"first {len(ok)} of {int((manifest['status'] == 'ok').sum())} images",
    )
    display(ShowImage(filename=str(sheet)))'''),
]

NB02 = [
    md("""
# 02 · Fetch a logo for every domain

Reads a list of company domains (CSV or parquet), normalises and de-duplicates them, and
finds the best logo for each with an ordered chain of providers. The `site` provider reads
the company's own homepage markup (`<link rel="icon">`, `apple-touch-icon`, the web app
manifest, `og:image`, `/favicon.ico`), downloads every candidate and keeps the largest real
image. Favicon services (`duckduckgo`, `google`) are fallbacks. Clearbit's free logo API,
which the original project used, shut down on 1 December 2025.

Results: `RUN/logos/{domain}.png` (alpha kept), `RUN/logos.parquet` (what happened to every
domain) and rows in `RUN/images.parquet`. With `source` other than `logos` this notebook
does nothing.
"""),
    params(COMMON + SOURCE + '''\
demo = True  # serve the built-in demo web on 127.0.0.1 and use it as the HTTP proxy
domains_path = "data/demo/domains.csv"  # CSV or parquet file with one domain per row
domain_column = "domain"  # name of the column that holds the domains
allow_ip = False  # accept bare IP addresses as domains
providers = ["site", "duckduckgo", "google"]  # logo sources, tried in this order
site_url_template = "https://{domain}/"  # homepage URL (falls back to http:// and www.)
duckduckgo_url = "https://icons.duckduckgo.com/ip3/{domain}.ico"  # DuckDuckGo favicon service
google_url = "https://www.google.com/s2/favicons?domain={domain}&sz=256"  # Google favicon service
max_domains = None  # only the first N valid domains (None: all)
concurrency = 8  # domains fetched in parallel
timeout_s = 10.0  # seconds before a request is abandoned
max_retries = 2  # retries for 5xx / 429 answers
proxy = None  # HTTP proxy URL for every request (the standard proxy env vars also work)
allow_private_hosts = False  # allow fetching from private/loopback addresses (demo and tests)
'''),
    code(SETUP),
    md("""
## Fetch

Domains already resolved in an earlier, interrupted run are skipped.
"""),
    code('''\
from lookalike import io, logos

if source == "logos":
    domains = logos.read_domains(domains_path, domain_column=domain_column, allow_ip=allow_ip)
    server = None
    if demo:
        from lookalike import demo as demo_web

        server = demo_web.serve()
        proxy, allow_private_hosts = server.url, True
        print(f"demo web serving on {server.url} (used as HTTP proxy)")
    try:
        fetched = logos.fetch_logos(
            domains,
            run,
            providers=providers,
            site_url_template=site_url_template,
            duckduckgo_url=duckduckgo_url,
            google_url=google_url,
            max_domains=max_domains,
            concurrency=concurrency,
            timeout_s=timeout_s,
            max_retries=max_retries,
            proxy=proxy,
            allow_private_hosts=allow_private_hosts,
        )
    finally:
        if server is not None:
            server.stop()
    manifest = io.merge_manifest(run, logos.to_image_manifest(fetched))
else:
    fetched = None
    print(f"source={source!r}: no domain list to fetch; nothing to do here.")'''),
    md("""
## What happened to each domain
"""),
    code('''\
if fetched is not None:
    display(fetched.groupby(["status", "provider"], dropna=False).size().rename("domains").to_frame())
    failed = fetched[fetched["status"] != "ok"]
    if len(failed):
        display(failed[["domain", "status", "reason"]].head(20))'''),
    code('''\
from IPython.display import Image as ShowImage

from lookalike import inspect

if fetched is not None and (fetched["status"] == "ok").any():
    ok = fetched[fetched["status"] == "ok"].head(48)
    sheet = inspect.contact_sheet(
        [run / "logos" / f"{d}.png" for d in ok["domain"]],
        run / "figures" / "02_logos.png",
        title=f"{int((fetched['status'] == 'ok').sum())} logos found",
    )
    display(ShowImage(filename=str(sheet)))'''),
]

NB03 = [
    md("""
# 03 · Embed every image with VGG16

Turns each image in `RUN/images.parquet` into one vector with an ImageNet-trained VGG16
(convolutional part only). Each image is composited onto a background (transparent logos
would otherwise turn black), padded to a square so wide logos are not stretched, resized
and passed through the network in batches; the feature map of `layer` is pooled into a
vector and L2-normalised.

Vectors go to `RUN/embeddings/vectors.npy` (float32, one row per image, in the order of
`RUN/embeddings/ids.parquet`). They are also cached by image content hash, model and
preprocessing settings under `cache_dir`, so a re-run or another run that shares images
computes only what is missing.
"""),
    params(COMMON + '''\
batch_size = 32  # images per forward pass
image_size = 224  # side in pixels of the square fed to the network
pooling = "avg"  # how the feature map becomes a vector: "avg", "max", "gem" or "flatten"
layer = "block5_pool"  # VGG16 layer whose output is pooled
normalize = True  # L2-normalise each vector
background = "white"  # colour under transparent pixels: "white", "black" or "auto"
fit = "pad"  # "pad" keeps the aspect ratio; "stretch" squashes to a square like the seeds
cache_dir = None  # shared embedding cache; None: $LOOKALIKE_CACHE or ~/.cache/lookalike
'''),
    code(SETUP),
    md("""
## The weights

The real ImageNet weights: Keras's own download where there is internet, otherwise the
offline copy converted once into the Keras cache (`lookalike weights` says which).
"""),
    code('''\
from lookalike import weights

info = weights.ensure_vgg16_weights()
print(info)'''),
    md("""
## Embed
"""),
    code('''\
from lookalike import embed

summary = embed.embed_images(
    run,
    batch_size=batch_size,
    image_size=image_size,
    pooling=pooling,
    layer=layer,
    normalize=normalize,
    background=background,
    fit=fit,
    cache_dir=cache_dir,
)
summary'''),
    code('''\
from lookalike import io

ids, vectors = io.read_embeddings(run)
print(f"{vectors.shape[0]} vectors of {vectors.shape[1]} dimensions")'''),
]

NB04 = [
    md("""
# 04 · Reduce with PCA, cluster with KMeans over a sweep of k

PCA keeps the directions that carry most of the variance (and speeds KMeans up); KMeans
then runs once per value of `k`. For every k, `RUN/metrics.csv` records the inertia (for
the elbow), silhouette, Davies–Bouldin and Calinski–Harabasz scores, and
`RUN/clusters.parquet` holds every image's cluster, its distance to the centroid and its
rank within the cluster. Values of k at or above the number of images are dropped.
"""),
    params(COMMON + '''\
pca_components = 100  # int: number of components; float in (0, 1): share of variance to keep
whiten = False  # scale components to unit variance
k_values = [3, 5, 10, 20, 50, 70, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]  # k sweep
n_init = 4  # KMeans restarts per k (the best is kept)
random_state = 0  # seed for PCA, KMeans and sampling
'''),
    code(SETUP),
    code('''\
from lookalike import cluster

metrics = cluster.cluster_run(
    run,
    pca_components=pca_components,
    whiten=whiten,
    k_values=k_values,
    n_init=n_init,
    random_state=random_state,
)
metrics'''),
]

NB05 = [
    md("""
# 05 · Choose k and look at the clusters

The elbow of inertia against k is found automatically (Kneedle); the silhouette,
Davies–Bouldin and Calinski–Harabasz scores are plotted beside it. The notebook states the
recommended k and the rule behind it; set `k` to override. Then every cluster of that k is
shown as a contact sheet, images nearest the centroid first. All figures are written to
`RUN/figures/`; only a bounded number are shown inline.
"""),
    params(COMMON + '''\
k = None  # number of clusters to inspect; None: the recommended k
method = "kmeans"  # clustering to inspect
max_sheets_inline = 12  # cluster sheets shown in the notebook (all are saved to files)
'''),
    code(SETUP),
    code('''\
import pandas as pd
from IPython.display import Image as ShowImage

from lookalike import inspect

metrics = pd.read_csv(run / "metrics.csv")
metrics = metrics[metrics["method"] == method]
k_rec, rule = inspect.recommend_k(metrics)
chosen = int(k) if k is not None else k_rec
print(f"recommended k = {k_rec} ({rule}); inspecting k = {chosen}")'''),
    md("""
## Elbow and scores
"""),
    code('''\
figures = run / "figures"
elbow = inspect.plot_elbow(metrics, figures / "elbow.png", knee=k_rec)
scores = inspect.plot_scores(metrics, figures / "scores.png")
display(ShowImage(filename=str(elbow)))
display(ShowImage(filename=str(scores)))'''),
    md("""
## The clusters at the chosen k
"""),
    code('''\
overview = inspect.overview_sheet(run, chosen, figures / f"overview_k{chosen}.png", method=method)
display(ShowImage(filename=str(overview)))
sheets = inspect.cluster_contact_sheets(run, chosen, method=method, out_dir=figures / "clusters")
print(f"{len(sheets)} cluster sheets in {figures / 'clusters'}")
for sheet in sheets[:max_sheets_inline]:
    display(ShowImage(filename=str(sheet)))'''),
]


def write(name: str, cells) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "lookalike",
        "display_name": "Python (lookalike)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    path = ROOT / "notebooks" / f"{name}.ipynb"
    path.parent.mkdir(exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    write("01_scrape", NB01)
    write("02_fetch_logos", NB02)
    write("03_embed_vgg16", NB03)
    write("04_pca_kmeans", NB04)
    write("05_elbow_and_inspect", NB05)
