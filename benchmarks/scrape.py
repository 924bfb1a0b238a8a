"""Scrape throughput: the seed's sequential loop against ``scrape_catalog``, same run, loopback.

A threaded HTTP server on 127.0.0.1 serves one listing page with ``--n`` distinct PNG
images; every response waits ``--latency`` seconds first (in its own server thread, so
concurrent requests overlap as they would against a remote shop). Measured in this run:

1. baseline, the seed's way: ``requests.get`` the listing, BeautifulSoup ``img[src]``, then
   one plain ``requests.get`` per image (a new connection each time) and a numbered file;
2. ``lookalike.scrape.scrape_catalog`` at its default ``concurrency`` into a fresh run folder
   (robots.txt, decoding, hashing, atomic writes and the manifest included);
3. politeness: ``scrape_catalog`` with ``delay_s=--delay`` on ``--polite-n`` images. The
   smallest gap between two request starts to the host, as the scraper's rate limiter let
   them go (``HostRateLimiter.on_start``; robots.txt, listing and images alike), must not be
   below ``delay_s``; the gaps between arrivals logged by the server are printed beside it.

Prints images/s of 1 and 2, their ratio, the ideal ratio (``concurrency`` x: the latency
dominates and every worker waits on its own request), and the politeness figures.

Run: ``.venv/bin/python benchmarks/scrape.py [--n 200] [--latency 0.05]`` (about 20 s).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the figures

import requests  # noqa: E402
from bs4 import BeautifulSoup  # noqa: E402
from PIL import Image  # noqa: E402

from lookalike import net, scrape  # noqa: E402


def make_images(n: int) -> dict[str, bytes]:
    """``n`` distinct 64 x 64 PNGs keyed by path."""
    out = {}
    for i in range(n):
        im = Image.new("RGB", (64, 64), (i % 256, (i * 7) % 256, (i * 13) % 256))
        im.putpixel((0, 0), (i // 256, 0, 0))  # distinct bytes beyond 256 colours
        buf = io.BytesIO()
        im.save(buf, "PNG")
        out[f"/img/{i}.png"] = buf.getvalue()
    return out


class Site:
    """The listing ``/shop/`` and its images, with a fixed latency per response."""

    def __init__(self, images: dict[str, bytes], latency_s: float):
        self.images, self.latency_s = images, latency_s
        self.arrivals: list[float] = []  # monotonic arrival time of each image request
        self.lock = threading.Lock()
        cards = "".join(
            f'<div class="product"><a href="/p/{i}"><img src="{p}" alt="item {i}"></a></div>'
            for i, p in enumerate(images)
        )
        self.listing = f"<html><body><main>{cards}</main></body></html>".encode()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; without TCP_NODELAY (which production
            # servers set) the body waits ~40 ms for a delayed ACK on kept-alive connections.
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 (http.server API)
                path = self.path
                if path in site.images:
                    with site.lock:
                        site.arrivals.append(time.monotonic())
                time.sleep(site.latency_s)
                if path == "/robots.txt":
                    status, ctype, body = 200, "text/plain", b"User-agent: *\nAllow: /\n"
                elif path == "/shop/":
                    status, ctype, body = 200, "text/html; charset=utf-8", site.listing
                elif path in site.images:
                    status, ctype, body = 200, "image/png", site.images[path]
                else:
                    status, ctype, body = 404, "text/plain", b"not found"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def seed_loop(catalog_url: str, out_dir: Path) -> int:
    """The first seed: one listing, ``img[src]``, ``requests.get`` per image, numbered files."""
    html = requests.get(catalog_url, timeout=30).text
    srcs = [img["src"] for img in BeautifulSoup(html, "lxml").find_all("img", src=True)]
    base = catalog_url.split("/", 3)[:3]
    for i, src in enumerate(srcs):
        url = src if src.startswith("http") else "/".join(base) + src
        (out_dir / f"{i}.png").write_bytes(requests.get(url, timeout=30).content)
    return len(srcs)


def run_scrape(url: str, run_dir: Path, **kwargs) -> tuple[float, int]:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the stage's own summary table
        df = scrape.scrape_catalog(url, run_dir, allow_private_hosts=True, **kwargs)
    seconds = time.perf_counter() - t0
    n_ok = int((df["status"] == "ok").sum())
    if n_ok != len(df):
        raise SystemExit(f"scrape_catalog failed some images: {df['reason'].value_counts()}")
    return seconds, n_ok


def main(argv: list[str] | None = None) -> None:
    default_concurrency = inspect.signature(scrape.scrape_catalog).parameters["concurrency"]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="images on the listing page")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added per response")
    ap.add_argument(
        "--concurrency",
        type=int,
        default=default_concurrency.default,
        help="scrape_catalog concurrency (default: the library default)",
    )
    ap.add_argument("--delay", type=float, default=0.1, help="delay_s of the politeness run")
    ap.add_argument("--polite-n", type=int, default=30, help="images in the politeness run")
    args = ap.parse_args(argv)

    site = Site(make_images(args.n), args.latency)
    # requests must not route 127.0.0.1 through a developer's proxy
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        os.environ.pop(var, None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "seed").mkdir()
            t0 = time.perf_counter()
            n_seed = seed_loop(site.url + "/shop/", tmp / "seed")
            seed_s = time.perf_counter() - t0

            ours_s, n_ours = run_scrape(
                site.url + "/shop/", tmp / "ours", concurrency=args.concurrency
            )

            site.arrivals.clear()  # only the politeness run's requests from here
            starts: list[float] = []  # as the scraper's rate limiter let them start
            net.HostRateLimiter.on_start = staticmethod(lambda host, t: starts.append(t))
            polite_s, n_polite = run_scrape(
                site.url + "/shop/",
                tmp / "polite",
                concurrency=args.concurrency,
                delay_s=args.delay,
                max_images=args.polite_n,
            )
            arrivals = sorted(site.arrivals)
    finally:
        net.HostRateLimiter.on_start = None
        site.close()

    seed_rate, ours_rate = n_seed / seed_s, n_ours / ours_s

    def gaps(times):
        times = sorted(times)
        return [b - a for a, b in zip(times, times[1:], strict=False)]

    client, server = gaps(starts), gaps(arrivals)
    print(f"scrape benchmark: {args.n} images, {args.latency * 1000:.0f} ms latency per response")
    print(f"  seed loop (sequential requests.get):   {seed_rate:7.1f} images/s  ({seed_s:.2f} s)")
    print(
        f"  scrape_catalog (concurrency={args.concurrency}):      {ours_rate:7.1f} images/s  "
        f"({ours_s:.2f} s)"
    )
    print(f"  ratio scrape_catalog / seed loop:       {ours_rate / seed_rate:7.2f} x")
    print(f"  ideal ratio (concurrency x):            {args.concurrency:7.2f} x")
    print(
        f"  politeness, delay_s={args.delay}: {n_polite} images in {polite_s:.2f} s "
        f"({n_polite / polite_s:.1f} images/s, at most {1 / args.delay:.1f} allowed)"
    )
    verdict = "holds" if min(client) >= args.delay else "VIOLATED"
    print(
        f"  min gap between request starts to the host (client side): {min(client):.4f} s "
        f">= delay_s {args.delay}: politeness {verdict} ({len(client) + 1} requests)"
    )
    print(
        f"  min gap between image requests arriving at the server:   {min(server):.4f} s "
        f"(mean {sum(server) / len(server):.4f} s; differs by loopback and scheduling jitter)"
    )


if __name__ == "__main__":
    main()
