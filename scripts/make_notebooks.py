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

COMMON = """\
run_dir = "runs/demo-logos"  # output folder of this run; relative paths are from the project root
"""

SOURCE = """\
source = "logos"  # where images come from: "catalog" (01 scrapes), "logos" (02 fetches) or "folder"
"""

SETUP = """\
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
(`RUN/images.parquet`). It reads each listing page, finds the product cards (the built-in
defaults recognise typical shop markup; `item_selector` names them exactly), takes each
card's image (lazy `data-src`, the largest `srcset` candidate, `<picture>`, `<noscript>`,
CSS backgrounds), optionally opens each product page for its gallery, and downloads each
image once, politely: robots.txt, a per-host delay, retries with back-off that honour
`Retry-After`, a time and size cap per request. Private and loopback addresses are refused
unless `allow_private_hosts` is set (the demo sets it).

Pagination: `page_url_template` such as `https://shop.example/shoes?page={page}`, else the
`next_selector` when given, else the page's `rel="next"` link or a common pager link.
Catalogs rendered from a JSON API: set `json_mode` and `image_json_path` (such as
`data.products[*].images.main.url`); the next page comes from the template,
`next_json_path` (such as `data.pagination.next`), a `next` key or a `Link` header.

With `source: folder` this notebook indexes your own folder of images instead (nothing is
copied or moved). With `source: logos` there is nothing to do here: `02_fetch_logos`
gathers the images.

With `demo = True` the notebook starts the built-in demo web on 127.0.0.1 and sends every
request through it as an HTTP proxy, so the default URLs below reach the demo shop offline.
"""),
    params(
        COMMON
        + SOURCE
        + """\
demo = True  # serve the built-in demo web on 127.0.0.1 and use it as the HTTP proxy
image_dir = None  # for source "folder": the folder of your images (searched recursively)
catalog_url = "http://shop.test/shoes/"  # first listing page of the catalog
page_url_template = None  # URL of listing page n with a {page} placeholder; None follows rel next
next_selector = None  # CSS selector of the next-page link, tried before rel next and pager links
max_pages = 20  # stop after this many listing pages
item_selector = None  # CSS selector of one product card; None uses the built-in defaults
image_selector = None  # CSS selector of the product image inside a card; None uses the defaults
follow_product_pages = False  # open each product page and take its gallery images too
max_images = None  # stop after this many image URLs (None: no limit)
concurrency = 4  # parallel downloads and product pages (the per-host delay still applies)
delay_s = 0.0  # politeness: minimum seconds between two requests to the same host
timeout_s = 20.0  # the most one request may take, connection to last byte, in seconds
max_retries = 3  # retries for 5xx / 429 answers, with exponential back-off or Retry-After
respect_robots = True  # obey the site's robots.txt
user_agent = "lookalike/0.1 (image-similarity research)"  # sent with every request; add a contact
min_side = 32  # skip images whose shorter side is below this many pixels (icons, pixels)
max_bytes = 20_000_000  # larger images fail as too_large (the download stops at the cap)
json_mode = False  # the listing pages return JSON instead of HTML
image_json_path = None  # with json_mode: dotted path to the image URLs, with [*] for lists
next_json_path = None  # with json_mode: dotted path to the next page URL; None looks for next
proxy = None  # HTTP proxy URL for every request (the standard proxy env vars also work)
allow_private_hosts = False  # allow fetching from private/loopback addresses (demo and tests)
"""
    ),
    code(SETUP),
    md("""
## Gather the images

The stage resumes: pages already read (`RUN/scrape_pages.parquet`) and images already
stored (`RUN/scrape.parquet`, `RUN/images/`) are not requested again; failed ones are
retried. Both tables grow row by row, so an interrupted run loses nothing.
"""),
    code("""\
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
            max_bytes=max_bytes,
            json_mode=json_mode,
            image_json_path=image_json_path,
            next_json_path=next_json_path,
            proxy=proxy,
            allow_private_hosts=allow_private_hosts,
        )
    finally:
        if server is not None:
            server.stop()
    summary = scraped.attrs["summary"]
    manifest = io.merge_manifest(run, scrape.to_image_manifest(scraped))
elif source == "folder":
    manifest = io.merge_manifest(run, io.index_folder(image_dir))
else:
    manifest = None
    print(f"source={source!r}: nothing to scrape; 02_fetch_logos gathers the images.")"""),
    md("""
## What happened

The scrape's summary (pages, images found, downloaded, skipped and failed by reason, success
rate, throughput), a few rows that did not make it with their reason, and the manifest.
"""),
    code("""\
if source == "catalog":
    display(summary)
    not_ok = scraped.loc[scraped["status"] != "ok", ["url", "status", "reason"]]
    if len(not_ok):
        display(not_ok.head(10))
if manifest is not None:
    counts = manifest.groupby(["source", "status"]).size().rename("images")
    display(counts.to_frame())"""),
    md("""
## A first look

A contact sheet of the first images, saved under `RUN/figures/`.
"""),
    code("""\
from IPython.display import Image as ShowImage

from lookalike import inspect

if manifest is not None and (manifest["status"] == "ok").any():
    ok = manifest[manifest["status"] == "ok"].head(48)
    sheet = inspect.contact_sheet(
        [io.image_abspath(run, p) for p in ok["path"]],
        run / "figures" / "01_sample.png",
        title=f"first {len(ok)} of {int((manifest['status'] == 'ok').sum())} images",
    )
    display(ShowImage(filename=str(sheet)))"""),
]

NB02 = [
    md("""
# 02 · Fetch a logo for every domain

Reads a list of company domains (CSV or parquet), normalises them (scheme, path, port and
`www.` dropped, lowercased, IDNA-encoded), de-duplicates them and finds the best logo for
each with an ordered chain of providers:

- `site`: the company's own homepage (https, then http, then `www.`; robots.txt honoured):
  `<link rel="icon">`, `apple-touch-icon`, `mask-icon`, the web app manifest, `<base href>`,
  then `/apple-touch-icon.png` and `/favicon.ico`, and `og:image` as a last resort. Every
  candidate is downloaded and the largest real image wins (SVG first, rendered offline).
- `logodev`, `brandfetch`: logo APIs, used only when you give a token / client id (or set
  the `LOGODEV_TOKEN` / `BRANDFETCH_CLIENT_ID` environment variables).
- `duckduckgo`, `google`: favicon services. Google's default globe counts as a miss.
- `clearbit`: the seed's provider. Clearbit's free logo API shut down on 1 December 2025;
  it is off by default and kept only to reproduce old runs.

Blank, single-colour and 1x1 images, HTML served as an image, corrupt files and
decompression bombs are rejected; a tiny icon is kept only if no provider has a bigger one.

Results: `RUN/logos/{domain}.png` (alpha kept; original bytes under `RUN/logos/original/`),
`RUN/logos.parquet` (what happened to every domain), `RUN/logos_summary.csv` and rows in
`RUN/images.parquet`. With `source` other than `logos` this notebook does nothing.
"""),
    params(
        COMMON
        + SOURCE
        + """\
demo = True  # serve the built-in demo web on 127.0.0.1 and use it as the HTTP proxy
domains_path = "data/demo/domains.csv"  # CSV or parquet file with one domain per row
domain_column = "domain"  # name of the column that holds the domains
allow_ip = False  # accept bare IP addresses as domains (otherwise reported as invalid)
providers = ["site", "logodev", "brandfetch", "duckduckgo", "google"]  # tried in this order
site_url_template = "https://{domain}/"  # homepage URL (falls back to http and to www.)
duckduckgo_url = "https://icons.duckduckgo.com/ip3/{domain}.ico"  # DuckDuckGo favicon service
google_url = "https://www.google.com/s2/favicons?domain={domain}&sz=256"  # Google favicons
logodev_url = None  # logo.dev URL template with {domain} and {token} (None: the default)
brandfetch_url = None  # Brandfetch URL template with {domain} and {client_id} (None: default)
clearbit_url = "https://logo.clearbit.com/{domain}"  # shut down 2025-12-01; for old runs only
logodev_token = None  # logo.dev publishable key (None: env var LOGODEV_TOKEN, else skipped)
brandfetch_client_id = None  # Brandfetch client id (None: env var BRANDFETCH_CLIENT_ID)
max_domains = None  # only the first N valid domains (None: all)
concurrency = 8  # domains fetched in parallel
per_host_concurrency = 4  # requests in flight to one host (protects the favicon services)
delay_s = 0.0  # minimum seconds between two requests to the same site
service_delay_s = 0.05  # minimum seconds between two requests to the same logo service
timeout_s = 10.0  # seconds before a request is abandoned
max_retries = 2  # retries for 5xx / 429 answers
domain_budget_s = 60.0  # wall-time budget per domain, all providers together
respect_robots = True  # obey each site's robots.txt (the services are APIs, not crawled)
min_side = 16  # reject images whose shorter side is smaller, in pixels (1x1 trackers)
prefer_side = 48  # a smaller logo is kept, but the next providers are asked for a bigger one
max_bytes = 5_000_000  # largest download accepted, in bytes
user_agent = "lookalike/0.1 (image-similarity research)"  # sent with every request
proxy = None  # HTTP proxy URL for every request (the standard proxy env vars also work)
allow_private_hosts = False  # allow fetching from private/loopback addresses (demo and tests)
"""
    ),
    code(SETUP),
    md("""
## Fetch

Domains already resolved in an earlier, interrupted run are skipped. Credentials are
redacted from every table.
"""),
    code("""\
from lookalike import io, logos

if source == "logos":
    domains = logos.read_domains(domains_path, domain_column=domain_column, allow_ip=allow_ip)
    templates = dict(
        site_url_template=site_url_template,
        duckduckgo_url=duckduckgo_url,
        google_url=google_url,
        logodev_url=logodev_url,
        brandfetch_url=brandfetch_url,
        clearbit_url=clearbit_url,
    )
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
            **{k: v for k, v in templates.items() if v is not None},
            logodev_token=logodev_token,
            brandfetch_client_id=brandfetch_client_id,
            allow_ip=allow_ip,
            max_domains=max_domains,
            concurrency=concurrency,
            per_host_concurrency=per_host_concurrency,
            delay_s=delay_s,
            service_delay_s=service_delay_s,
            timeout_s=timeout_s,
            max_retries=max_retries,
            domain_budget_s=domain_budget_s,
            respect_robots=respect_robots,
            min_side=min_side,
            prefer_side=prefer_side,
            max_bytes=max_bytes,
            user_agent=user_agent,
            proxy=proxy,
            allow_private_hosts=allow_private_hosts,
        )
    finally:
        if server is not None:
            server.stop()
    manifest = io.merge_manifest(run, logos.to_image_manifest(fetched))
else:
    fetched = None
    print(f"source={source!r}: no domain list to fetch; nothing to do here.")"""),
    md("""
## What happened to each domain

The summary: success rate overall and per provider (a provider's rate is over the domains
that reached it), failures by reason, and invalid inputs by reason. Then how each logo was
found, and the domains without one (`detail` says what every provider answered).
"""),
    code("""\
if fetched is not None:
    display(logos.summarize(fetched))
    ok = fetched[fetched["status"] == "ok"]
    display(ok.groupby(["provider", "kind", "format"]).size().rename("domains").to_frame())
    failed = fetched[fetched["status"] != "ok"]
    if len(failed):
        display(failed[["domain", "raw", "status", "reason", "detail"]].head(20))"""),
    md("""
## Contact sheet

The first logos found, saved under `RUN/figures/`.
"""),
    code("""\
from IPython.display import Image as ShowImage

from lookalike import inspect

if fetched is not None and (fetched["status"] == "ok").any():
    ok = fetched[fetched["status"] == "ok"].head(48)
    sheet = inspect.contact_sheet(
        [run / "logos" / f"{d}.png" for d in ok["domain"]],
        run / "figures" / "02_logos.png",
        title=f"{int((fetched['status'] == 'ok').sum())} logos found",
    )
    display(ShowImage(filename=str(sheet)))"""),
]

NB03 = [
    md("""
# 03 · Embed every image with VGG16

Turns each image in `RUN/images.parquet` into one vector with an ImageNet-trained VGG16
(convolutional part only). Each image is decoded safely (EXIF orientation, first frame of an
animation, largest frame of an ICO, every Pillow mode including palette transparency, CMYK
and 16-bit), composited onto a background (transparent logos would otherwise turn black),
padded to a square so wide logos are not stretched, resized and run through the network in
batches while the next images are decoded on worker threads. The feature map of `layer` is
pooled into a vector and L2-normalised. Images that cannot be read are skipped, listed in
`RUN/embeddings/failed.parquet` and marked `failed` (with the reason) in the manifest.

Vectors are written as they come to `RUN/embeddings/vectors.npy` (float32, one row per
image, in the order of `RUN/embeddings/ids.parquet`; read it with `mmap_mode="r"`), so
memory does not grow with the number of images. They are also cached per image under
`cache_dir`, keyed by the image's sha256, the weights' digest and every setting below, so a
re-run or another run that shares images computes only what is missing.

### Presets: `logos` and `photos`

`preset` sets every embedding parameter left at `None`; `auto` picks `logos` when most
images came from notebook 02, else `photos`. **`photos`** is the plain embedding described
below (max pooling of `block5_pool`, on white, padded), compared by cosine: nothing
logo-specific touches product photos. **`logos`** is built for what logo sets hold, the
icon of one brand beside the full lockup (icon plus wordmark) of another: each image is
cropped to its artwork (`trim`) and embedded at `block4_pool` with GeM pooling; a wide or
tall lockup also gets its two end squares embedded (`parts`, 160 px), because that is where
its icon sits. Notebook 04 then PCA-whitens the vectors on the run's own images, scores two
images by their best-matching pair (whole-whole, whole-part or part-whole cosine), blends in
the overlap of their colour histograms (`colour_weight` 0.1; brand colours are half a
logo's identity), and clusters that similarity with average linkage beside KMeans.

Measured with `benchmarks/quality.py --recipes seeds default --fresh-cache` (README, "How
well does it work"): P@1 is the share of images whose nearest neighbour is in the same
group, ARI and NMI score a clustering at k = number of groups (the best method offered).

| set (images, groups) | seeds' recipe | `photos` (plain) | **`logos`** | `logos` time |
|---|---|---|---|---|
| logos-dev (1,067, 526 brands) | 0.029 / 0.001 | 0.051 / 0.022 | **0.818 / 0.740** | 1.38x |
| Devicon (1,741, 578) | 0.065 / 0.000 | 0.666 / 0.256 | **0.899 / 0.733** | 1.11x |
| emoji by 4 vendors (1,000, 250) | 0.252 / 0.129 | 0.422 / 0.202 | **0.461 / 0.253** | 1.00x |

Each cell is P@1 / ARI (of the best clustering method offered, so some differ from the
KMeans-only table below); the time is the `logos` embedding time over the plain default's
in the same run (an earlier run: 1.56x, 1.46x, 1.12x).
The `logos` ARI is the similarity clustering's; on PCA, KMeans scores 0.015 and 0.196 on
the two logo sets. The cost: embedding at `logos` took 1.0 to 1.6 times the plain
default (the parts are run only for lockups, at 160 px); this notebook prints both times.

### The plain embedding (`photos`): why these defaults

Measured with `benchmarks/quality.py` on three labelled sets (fp32, 224 px): the 1,067
brand logos of `logos-dev` (526 brands, a main logo and an icon each), 1,741 Devicon
technology logos (578 groups, transparent) and 1,000 emoji drawn by four vendors (250
groups). P@1 is the share of images whose nearest neighbour is in the same group; ARI and
NMI score KMeans at k = number of groups on PCA 100, as in notebook 04.

| set | score | seeds' recipe | **`photos` (max)** | avg | GeM | flatten + L2 |
|---|---|---|---|---|---|---|
| logos-dev (1,067 images, 526 groups) | P@1 | 0.029 | **0.051** | 0.039 | 0.046 | 0.037 |
|  | ARI | 0.001 | **0.021** | 0.004 | 0.013 | 0.015 |
|  | NMI | 0.808 | **0.864** | 0.825 | 0.856 | 0.859 |
| Devicon (1,741, 578) | P@1 | 0.065 | **0.667** | 0.520 | 0.647 | 0.752 |
|  | ARI | -0.001 | **0.256** | 0.115 | 0.241 | 0.270 |
|  | NMI | 0.589 | **0.880** | 0.841 | 0.876 | 0.887 |
| emoji (1,000, 250) | P@1 | 0.252 | **0.422** | 0.383 | 0.432 | 0.479 |
|  | ARI | 0.087 | **0.202** | 0.175 | 0.189 | 0.255 |
|  | NMI | 0.758 | **0.809** | 0.801 | 0.806 | 0.827 |

All but the seeds' recipe differ only in pooling (512-d, flatten 25,088-d).

- **Composite on white, pad, `pooling = "max"`, L2-normalise** beats the seeds' recipe
  (plain `convert("RGB")`, stretch, flatten, no normalisation) on all three numbers of all
  three sets. Compositing matters most on transparent artwork: on Devicon the seeds' plain
  RGB conversion turns transparent pixels black and P@1 falls to 0.065 (0.667 composited
  on white).
- **Max pooling** scored higher than average pooling on all three numbers of every set (P@1
  0.051, 0.667, 0.422 against 0.039, 0.520, 0.383), and above or level with GeM. Flatten
  + L2 (25,088-d) scores higher on Devicon and emoji but lower on `logos-dev`, at 49 times
  the size in memory, on disk and in PCA: use `pooling = "flatten"` when that is affordable.
- **`trim`** stays off for `photos`: on the whole image alone, cropping uniform margins
  moved P@1 by +0.001, -0.008 and +0.023 on logos-dev, Devicon and emoji (an int8 run of
  the same script): no consistent gain. `logos` turns it on, because its parts are cut from
  the artwork's own bounding box.
- **`background = "white"`**: `auto` (black behind light artwork) scored 0.000, +0.002 and
  -0.009 P@1 against white on the whole image; `logos` uses `auto` so white-on-transparent
  logos keep their shape in the parts.

### Speed: `precision`

`benchmarks/embed.py` (200 real images from `data/demo`, 2-core CPU, all in one run):
the seeds' way (one `predict` per image) ran 3.75 images/s; this notebook's default (fp32,
batches of 32, decoding on 2 threads ahead of the model) 8.99 images/s, **2.4x**, with the
model busy 85% of the time (10.6 images/s when it is fed pre-decoded batches). ONNX Runtime
fp32 gives the same vectors (cosine 1.00000) no faster (8.1 model-only), so the exact
default stays on Keras, the reference.

`precision = "int8"` runs a statically quantized copy of the same network on ONNX Runtime's
int8 (VNNI) kernels, with the first convolution (raw pixels) and the last (it feeds the
vector) left in fp32: 20.0 images/s end to end, **5.3x the seeds and 2.2x the fp32
default** (27.6 model-only: decoding becomes the limit), with a mean cosine of 0.9994
(lowest 0.998) to the fp32 vector of the same image. Its nearest neighbour stayed the same
for 96% of those images; the 8 that changed moved to one of fp32's 3 nearest, near ties
(median cosine gap 0.003). Quantizing all 13 convolutions was 5% faster but kept only 93%.
Compare with `benchmarks/embed.py --set YOUR_FOLDER` before relying on it.
`bf16` (Keras mixed precision) agrees to a cosine of 0.99998 but ran slower than fp32
(5.7 images/s) on this CPU, which has AVX512-BF16 but no AMX. A smaller `image_size` (e.g.
128 for small logos) is much faster again, but it is a different embedding, not an
approximation of the 224 px one.
"""),
    params(
        COMMON
        + """\
preset = "auto"  # logos, photos, or auto (logos when most images came from notebook 02)
batch_size = 32  # images per forward pass
image_size = None  # side in pixels of the square fed to the network; None means 224
pooling = None  # max, avg or gem (512-d) or flatten; None means the preset (logos gem, photos max)
layer = None  # VGG16 layer pooled; None means the preset (logos block4_pool, photos block5_pool)
normalize = True  # L2-normalise each vector
background = None  # white, black, auto or none; None means the preset (logos auto, photos white)
fit = None  # pad keeps the aspect ratio, stretch squashes like the seeds; None means pad
trim = None  # crop uniform margins first; None means the preset (logos on, photos off)
parts = None  # also embed the end squares of wide lockups; None means the preset (logos only)
colour_weight = None  # share of the colour signature in the similarity, 0 to 1; None means preset
precision = "fp32"  # fp32 exact, int8 fast path on ONNX Runtime, or bf16
workers = 2  # decoding threads that run ahead of the model
force = False  # rebuild RUN/embeddings even when it is current; the cache still serves
cache_dir = None  # vector cache; None: embeddings under LOOKALIKE_CACHE or ~/.cache/lookalike
"""
    ),
    code(SETUP),
    md("""
## The weights

The real ImageNet weights: Keras's own download where there is internet, otherwise the
offline copy converted once into the Keras cache (`lookalike weights` says which). Their
`weights_id` (a digest of the weight arrays) is part of every cache key.
"""),
    code("""\
from lookalike import weights

info = weights.ensure_vgg16_weights()
print(info)"""),
    md("""
## Embed

The bar counts images per second; the last line sums up: embedded, from the cache,
computed now, failed, and the throughput of the model phase.
"""),
    code("""\
from lookalike import embed, similarity

settings = similarity.resolve_preset(
    preset,
    run_dir=run,
    image_size=image_size,
    pooling=pooling,
    layer=layer,
    background=background,
    fit=fit,
    trim=trim,
    parts=parts,
    colour_weight=colour_weight,
)
print(f"preset {settings['preset']}: {settings}")
summary = embed.embed_images(
    run,
    **similarity.embed_kwargs(settings),
    batch_size=batch_size,
    normalize=normalize,
    precision=precision,
    workers=workers,
    force=force,
    cache_dir=cache_dir,
)
extras = similarity.embed_extras(
    run, settings, batch_size=batch_size, precision=precision, workers=workers, cache_dir=cache_dir
)
print(
    f"cost: whole images {summary['seconds']:.1f} s, parts and colour {extras['seconds']:.1f} s "
    f"({extras['with_parts']} lockups of {extras['n_images']} images)"
)"""),
    code("""\
import pandas as pd

from lookalike import io

display(pd.Series(summary, name="value").to_frame())
failed = pd.read_parquet(run / "embeddings" / "failed.parquet")
print(f"{len(failed)} image(s) could not be embedded; they are marked failed in images.parquet")
display(failed.head(20))
ids, vectors = io.read_embeddings(run)
print(f"{vectors.shape[0]} vectors of {vectors.shape[1]} dimensions")"""),
    md("""
## Nearest neighbours

A quick look at what the vectors consider alike: a few images (first column) and their
five nearest neighbours by cosine similarity.
"""),
    code("""\
import numpy as np
from IPython.display import Image as ShowImage

from lookalike import inspect

if len(ids) > 1:
    picks = np.unique(np.linspace(0, len(ids) - 1, num=min(6, len(ids))).astype(int))
    grid = np.column_stack([picks, embed.nearest_neighbours(vectors, picks, k=5)])
    sheet = inspect.contact_sheet(
        [io.image_abspath(run, ids["path"].iloc[j]) for j in grid.ravel()],
        run / "figures" / "03_neighbours.png",
        title="each row: an image, then its nearest neighbours",
        columns=grid.shape[1],
    )
    display(ShowImage(filename=str(sheet)))"""),
]

NB04 = [
    md("""
# 04 · Reduce with PCA, then cluster: KMeans over a sweep of k, agglomerative, similarity

PCA keeps the directions that carry most of the variance, and makes clustering fast. Up to
three methods then cluster the images, and are scored alike:

- **KMeans** for every k of `k_values` (values at or above the number of images are
  dropped). `algorithm = "auto"` runs exact KMeans up to 5,000 images and MiniBatchKMeans
  above (the size comes from a measurement, `benchmarks/cluster.py`).
- **Agglomerative** clustering (average linkage on cosine distance), better for many small
  groups such as variants of one logo; the tree is cut at the same k values, or at
  `agglomerative_threshold`. Its memory grows with the square of the number of images, so
  it is skipped, with a message, above `agglomerative_max` images.
- **Similarity** (only when notebook 03 ran the `logos` preset): the same average-linkage
  tree, built on 03's fused logo similarity (whole image and lockup parts, whitened, blended
  with colour) instead of on PCA, cut at the same k values. On labelled logo sets it is the
  method that puts a brand's icon and its full lockup together (README, "How well does it
  work"). Its scores below are computed in the PCA space like the others, which is not the
  space it clusters in, so they understate it.

Every image's `neighbors_k` (10) nearest images under the run's own similarity (the fused
one for `logos`, cosine for `photos`) go to `RUN/neighbors.parquet` (image_id, rank, neighbor_id,
similarity); notebook 05 shows them as "more like this".

`RUN/metrics.csv` has one row per method and k: inertia, silhouette (on a seeded sample of
`silhouette_sample` images when there are more), Davies–Bouldin, Calinski–Harabasz and
seconds. `RUN/clusters.parquet` gives every image's cluster for each method and k, its
distance to the cluster centre and its rank (0 = nearest; cluster 0 is the largest). The
same inputs and seed give the same file. Your images are never moved or copied:
`export_folders` writes `RUN/clusters/k_{k}/cluster_{c}/` folders of links (`symlink`) or
copies (`copy`) for those who want folders.
"""),
    params(
        COMMON
        + """\
pca_components = 100  # int: number of components; float in (0, 1): share of variance to keep
whiten = False  # scale components to unit variance
k_values = [3, 5, 10, 20, 50, 70, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]  # k sweep
algorithm = "auto"  # kmeans (exact), minibatch (MiniBatchKMeans) or auto (minibatch if large)
n_init = 4  # exact KMeans restarts per k (the best is kept)
random_state = 0  # seed for PCA, KMeans and sampling
silhouette_sample = 10000  # with more images, silhouette uses a seeded sample of this size
agglomerative = True  # also cluster with average-linkage agglomerative on cosine distance
agglomerative_threshold = None  # cosine distance to cut the tree at, e.g. 0.3; None: each k
agglomerative_max = 20000  # skip agglomerative above this many images (memory grows as n squared)
similarity = True  # with the logos preset of 03, also cluster on its fused similarity
neighbors_k = 10  # neighbours per image in RUN/neighbors.parquet
export_folders = "none"  # none, symlink or copy: also write RUN/clusters/k_K/cluster_C folders
"""
    ),
    code(SETUP),
    code("""\
from lookalike import cluster

metrics = cluster.cluster_run(
    run,
    pca_components=pca_components,
    whiten=whiten,
    k_values=k_values,
    algorithm=algorithm,
    n_init=n_init,
    random_state=random_state,
    silhouette_sample=silhouette_sample,
    agglomerative=agglomerative,
    agglomerative_threshold=agglomerative_threshold,
    agglomerative_max=agglomerative_max,
    similarity=similarity,
    neighbors_k=neighbors_k,
    export_folders=export_folders,
)
metrics"""),
    md("""
## The methods side by side

Silhouette (higher is better) and Davies–Bouldin (lower is better) for each k.
"""),
    code("""\
scores = ["silhouette", "davies_bouldin"]
metrics.pivot_table(index="k", columns="method", values=scores).round(3)"""),
]

NB05 = [
    md("""
# 05 · Choose k and look at the clusters

The knee of inertia against k is found automatically (Kneedle, the `kneed` package); the
silhouette, Davies–Bouldin and Calinski–Harabasz scores are plotted beside it for every
method of notebook 04. `method = "auto"` inspects the `similarity` clustering when the run
has it (the `logos` preset), else KMeans. The notebook states the recommended k and the rule
that produced it; set `k` to override it. Then it shows the clusters of that k: a one-page
overview and a contact sheet per cluster (images nearest the centre first, size and
cohesion in the title), the PCA variance curve, two 2-D maps with thumbnails,
near-duplicates, a live browser and a self-contained HTML gallery to share. Every figure
is written to `RUN/figures/`; only a bounded number are shown here, so the saved notebook
stays small.
"""),
    params(
        COMMON
        + """\
k = None  # number of clusters to inspect; None: the recommended k
method = "auto"  # clustering to inspect: kmeans, agglomerative, similarity, or auto
max_sheets_inline = 6  # cluster sheets shown here (all are saved to RUN/figures/clusters)
map_thumbnails = 120  # at most this many thumbnails on each 2-D map
tsne_max = 2000  # t-SNE runs on a seeded sample of at most this many images
dup_threshold = 0.97  # cosine similarity at or above which two images are near-duplicates
n_neighbours = 8  # nearest neighbours listed per image in the browser and the gallery
gallery_k_values = None  # k values in the HTML gallery; None: every k of every method
random_state = 0  # seed for t-SNE and sampling
"""
    ),
    code(SETUP),
    code("""\
import pandas as pd
from IPython.display import Image as ShowImage

from lookalike import inspect

figures = run / "figures"
metrics = pd.read_csv(run / "metrics.csv")
if method == "auto":  # the fused similarity when 03 ran the logos preset, else KMeans
    method = inspect.default_method(metrics)
choice = inspect.choose_k(metrics, k, method=method)
chosen = choice.k
print(choice)"""),
    md("""
## Elbow and scores

The dashed line marks the knee when Kneedle finds one; the dotted line marks the k
inspected below when it differs.
"""),
    code("""\
elbow = inspect.plot_elbow(
    metrics, figures / "elbow.png", knee=choice.knee, chosen=chosen, method=method
)
scores = inspect.plot_scores(metrics, figures / "scores.png", chosen=chosen)
display(ShowImage(filename=str(elbow)))
display(ShowImage(filename=str(scores)))"""),
    md("""
## PCA and two maps

How much variance the PCA components keep, then the images on the first two components and
on a t-SNE map, coloured by cluster, with thumbnails where they do not overlap.
"""),
    code("""\
variance = inspect.plot_pca_variance(run, figures / "pca_variance.png")
display(ShowImage(filename=str(variance)))
for projection in ("pca", "tsne"):
    path = inspect.plot_map(
        run,
        chosen,
        figures / f"map_{projection}_k{chosen}.png",
        projection=projection,
        method=method,
        max_thumbnails=map_thumbnails,
        max_points=tsne_max,
        random_state=random_state,
    )
    display(ShowImage(filename=str(path)))"""),
    md("""
## The clusters at the chosen k

One row per cluster (the images nearest its centre), then a contact sheet per cluster.
"""),
    code("""\
overview = inspect.overview_sheet(run, chosen, method=method)
display(ShowImage(filename=str(overview)))
sheets = inspect.cluster_contact_sheets(run, chosen, method=method, out_dir=figures / "clusters")
print(f"{len(sheets)} cluster sheets in {figures / 'clusters'}; the first {max_sheets_inline}:")
for sheet in sheets[:max_sheets_inline]:
    display(ShowImage(filename=str(sheet)))"""),
    md("""
## Near-duplicates

Groups of images whose PCA vectors have a cosine similarity of at least `dup_threshold`
(listed in `RUN/near_duplicates.csv`).
"""),
    code("""\
dups = inspect.find_near_duplicates(run, threshold=dup_threshold)
sheet = inspect.near_duplicates_sheet(dups, figures / "near_duplicates.png")
display(ShowImage(filename=str(sheet)))
dups.head(20)"""),
    md("""
## Browse

Pick k and a cluster to see its grid; pick an image to see "more like this": its nearest
images from `RUN/neighbors.parquet`, under the run's own similarity (the fused logo
similarity for the `logos` preset), with their distance 1 - similarity. The browser needs
a live kernel (JupyterLab); the saved report shows the neighbours of one image as a static
figure instead.
"""),
    code("""\
browser = inspect.ClusterBrowser(run, method=method, k=chosen, n_neighbours=n_neighbours)
display(browser.widget())
example = browser.save_neighbours(browser.image_id, figures / "neighbours_example.png")
display(ShowImage(filename=str(example)))"""),
    md("""
## A gallery to share

`RUN/report/gallery.html` opens in any browser without Jupyter: pick a clustering, open a
cluster, click an image for its neighbours.
"""),
    code("""\
gallery = inspect.write_gallery(
    run,
    k_values=gallery_k_values,
    choice=choice,
    duplicates=dups,
    dup_threshold=dup_threshold,
    n_neighbours=n_neighbours,
)
print(f"open {gallery} in a browser")"""),
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
