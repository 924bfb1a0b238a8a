"""Logo fetching: the seed's one-URL-per-domain way against the provider chain, same run.

A simulated web (``tests/simweb.py``: a real forward proxy on 127.0.0.1 with TLS for the
https hosts) serves ``--n`` generated brand domains, each exposing its logo through one
random mechanism (seeded), some unrecoverable, plus stand-ins for DuckDuckGo, Google and the
seed's Clearbit at their real host names. Every response (and every CONNECT answer) waits
``--latency`` seconds first, in its own server thread. Measured in this run, on the same web:

1. baseline, the seed's way: one plain ``requests.get("https://logo.clearbit.com/{domain}")``
   per domain (a new connection each time, as the seed did) on ``--threads`` threads; a domain
   counts as recovered when the answer is 200 and Pillow decodes it. The stand-in knows the
   logo of EVERY recoverable domain: this is the seed's best case (the real service is shut
   down, so today the seed recovers nothing);
2. ``lookalike.logos.fetch_logos`` with its default chain and URL templates
   (site, duckduckgo, google) at ``concurrency=--threads`` into a fresh run folder (robots.txt,
   decoding, ranking, PNG writes and the table included).

Prints domains/s of both, their ratio, recovery of both (of all domains and of the
recoverable ones), how often the chain picked the largest candidate (ground truth from the
generator), and the requests each way sent per domain.

Run: ``.venv/bin/python benchmarks/logos.py [--n 500] [--latency 0.05] [--threads 10]``
(about a minute). Needs the dev extras (trustme) for the simulated TLS.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the figures
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import requests  # noqa: E402
import simweb  # noqa: E402
from PIL import Image  # noqa: E402

from lookalike import logos, providers  # noqa: E402


def seed_way(domains: list[str], proxy: str, threads: int) -> tuple[float, dict[str, bool]]:
    """The seed: one GET per domain on the Clearbit template; seconds and success per domain."""
    proxies = {"http": proxy, "https": proxy}

    def one(domain: str) -> bool:
        try:
            url = providers.CLEARBIT_URL.format(domain=domain)
            r = requests.get(url, proxies=proxies, timeout=10)
            if r.status_code != 200:
                return False
            Image.open(io.BytesIO(r.content)).load()
            return True
        except Exception:
            return False

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ok = dict(zip(domains, pool.map(one, domains), strict=True))
    return time.perf_counter() - t0, ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500, help="generated domains")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per response")
    ap.add_argument("--threads", type=int, default=10, help="threads for both ways")
    ap.add_argument("--random-state", type=int, default=0, help="seed of the generated web")
    args = ap.parse_args(argv)

    hosts, truth = simweb.generate_web(args.n, random_state=args.random_state)
    domains = truth["domain"].tolist()
    recoverable = set(truth.loc[truth["recoverable"], "domain"])
    print(
        f"simulated web: {len(domains)} domains ({len(recoverable)} recoverable, one mechanism "
        f"each, seed {args.random_state}), {args.latency * 1000:.0f} ms per response, "
        f"{args.threads} threads, {os.cpu_count()} CPUs"
    )
    with simweb.SimWeb(hosts, latency_s=args.latency) as web:
        os.environ["REQUESTS_CA_BUNDLE"] = web.ca_bundle  # trust the simulated TLS
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY"):
            os.environ.pop(name, None)

        seed_s, seed_ok = seed_way(domains, web.url, args.threads)
        seed_requests = sum(web.hits.values()) + sum(web.connects.values())

        before = sum(web.hits.values()) + sum(web.connects.values())
        with tempfile.TemporaryDirectory() as run:
            t0 = time.perf_counter()
            df = logos.fetch_logos(
                domains,
                run,
                proxy=web.url,
                concurrency=args.threads,
                allow_private_hosts=True,  # the fake names exist only behind the proxy
                progress=False,
            )
            chain_s = time.perf_counter() - t0
        chain_requests = sum(web.hits.values()) + sum(web.connects.values()) - before

    got = truth.merge(df, on="domain", suffixes=("_truth", ""), validate="1:1")
    chain_ok = dict(zip(got["domain"], got["status"] == "ok", strict=True))
    rec = got[got["recoverable"]]
    path = rec["url"].map(lambda u: urlsplit(u).path if isinstance(u, str) else None)
    largest = ((path == rec["path"]) & (rec["provider"] == rec["provider_truth"])).mean()
    n, n_rec = len(domains), len(recoverable)

    def rates(ok: dict[str, bool]) -> str:
        all_ = sum(ok.values())
        of_rec = sum(ok[d] for d in recoverable)
        return f"{100 * all_ / n:.1f}% of all, {100 * of_rec / n_rec:.1f}% of recoverable"

    seed_speed, chain_speed = n / seed_s, n / chain_s
    print(
        f"seed (one Clearbit URL per domain, {args.threads} threads): {seed_s:.1f} s, "
        f"{seed_speed:.1f} domains/s, recovered {rates(seed_ok)}, "
        f"{seed_requests / n:.1f} requests/domain (best case: the stand-in knows every logo)"
    )
    print(
        f"chain (site, duckduckgo, google; concurrency {args.threads}): {chain_s:.1f} s, "
        f"{chain_speed:.1f} domains/s, recovered {rates(chain_ok)}, largest candidate picked "
        f"for {100 * largest:.1f}% of recoverable, {chain_requests / n:.1f} requests/domain"
    )
    print(f"ratio chain/seed: {chain_speed / seed_speed:.2f}x domains/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
