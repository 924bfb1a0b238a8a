"""The domain list of stage 02: user spellings reduced to bare ASCII domains, deduplicated.

:func:`read_domains` reads a CSV or parquet list; :func:`normalize_domains` does the same for
values in memory; :func:`domain_labels` reads a name per domain from another column;
:func:`domain_rows` accepts any of the inputs of
:func:`lookalike.logos.fetch_logos`.
"""

from __future__ import annotations

import csv
import ipaddress
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

import idna
import pandas as pd

from .exceptions import ConfigError, LogoFetchError
from .paths import resolve


def _invalid(reason: str, raw, detail: str) -> ValueError:
    err = ValueError(f"{reason}: {raw!r} {detail}")
    err.reason = reason  # type: ignore[attr-defined]
    return err


def normalize_domain(raw, *, allow_ip: bool = False) -> str:
    """Reduce a user's spelling of a site to its bare ASCII domain.

    ``" https://www.Bücher.DE:443/shop?x=1 "`` -> ``"xn--bcher-kva.de"``: scheme, user info,
    port, path, query, a leading ``www.`` and a trailing dot are dropped, the result is
    lowercased and IDNA-encoded. The host is first mapped as UTS 46 says, so the ideographic
    full stop ``。`` (and its full-width ``．`` and half-width ``｡`` forms) separates labels
    like ``.``: ``"idn-dot。logo。test"`` -> ``"idn-dot.logo.test"``.

    Raises
    ------
    ValueError
        With ``.reason`` one of ``empty``, ``has_space``, ``no_dot``, ``ip_not_allowed``,
        ``invalid_idna`` (also the start of the message).
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        raise _invalid("empty", raw, "(no value)")
    text = str(raw).strip()
    if not text:
        raise _invalid("empty", raw, "(blank)")
    if any(c.isspace() for c in text):
        raise _invalid("has_space", raw, "(a domain has no spaces)")
    if "://" not in text:
        text = "//" + text.lstrip("/")
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError as exc:
        raise _invalid("invalid_idna", raw, f"({exc})") from None
    try:  # UTS 46: "。", "．" and "｡" are dots, full-width letters are letters
        host = idna.uts46_remap(host, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise _invalid("invalid_idna", raw, f"({exc})") from None
    host = host.rstrip(".")
    if not host:
        raise _invalid("empty", raw, "(no host name)")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if not allow_ip:
            raise _invalid("ip_not_allowed", raw, "(an IP address; pass allow_ip=True)")
        return str(ip)
    if "." not in host:
        raise _invalid("no_dot", raw, "(expected a domain like example.com)")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise _invalid("invalid_idna", raw, f"({exc})") from None
    if ascii_host.startswith("www.") and "." in ascii_host[4:]:
        ascii_host = ascii_host[4:]
    return ascii_host


def normalize_domains(
    values: Iterable, *, allow_ip: bool = False, rows: Iterable[int] | None = None
) -> pd.DataFrame:
    """Normalize and deduplicate raw domain spellings; the table :func:`read_domains` returns.

    ``input_rows`` are positions in ``values``, or the matching entries of ``rows`` (the
    input's own row numbers, when some rows were left out); invalid values get one row per
    distinct spelling with ``status == "invalid"`` and the reason from :func:`normalize_domain`.
    """
    groups: dict[tuple[str, str], dict] = {}
    values = list(values)
    numbers = range(len(values)) if rows is None else list(rows)
    for i, raw in zip(numbers, values, strict=True):
        try:
            key, row = ("ok", normalize_domain(raw, allow_ip=allow_ip)), None
            row = {"domain": key[1], "raw": str(raw).strip(), "status": "ok", "reason": None}
        except ValueError as exc:
            text = "" if raw is None or (isinstance(raw, float) and raw != raw) else str(raw)
            key = ("invalid", text.strip())
            row = {"domain": None, "raw": text.strip(), "status": "invalid"}
            row["reason"] = getattr(exc, "reason", "invalid")
        group = groups.setdefault(key, dict(row, input_rows=[]))
        group["input_rows"].append(i)
    df = pd.DataFrame(
        list(groups.values()), columns=["domain", "input_rows", "raw", "status", "reason"]
    )
    for col in ("domain", "raw", "status", "reason"):
        df[col] = df[col].astype("string")
    return df


def _data_row_numbers(path: Path, sep: str, n: int) -> list[int]:
    """The 0-based data-row number of each of the ``n`` records pandas read, blank lines counted.

    pandas skips blank lines; :mod:`csv` reports them (as ``[]``), so the two together give
    the numbers a spreadsheet shows. A file the two read differently keeps 0..n-1.
    """
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        records = list(csv.reader(f, delimiter=sep))
    while records and not records[0]:  # blank lines before the header
        records.pop(0)
    numbers = [i for i, rec in enumerate(records[1:]) if rec]
    return numbers if len(numbers) == n else list(range(n))


def read_domains(path, *, domain_column: str = "domain", allow_ip: bool = False) -> pd.DataFrame:
    """Read a CSV or parquet list of domains, normalize and deduplicate them.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (or ``.tsv``/``.txt`` with a header) or ``.parquet``; relative paths are
        from the project root.
    domain_column : str, default "domain"
        Column holding the domains (any spelling: URLs, ``www.``, upper case...).
    allow_ip : bool, default False
        Accept bare IP addresses.

    Returns
    -------
    DataFrame
        One row per distinct normalized domain and per distinct invalid value, in order of
        first appearance: ``domain`` (string, missing when invalid), ``input_rows`` (list of
        0-based data-row indices), ``raw`` (first spelling seen), ``status`` ("ok" or
        "invalid") and ``reason`` (see :func:`normalize_domain`).

    Notes
    -----
    ``input_rows`` count every line after the header of a CSV, blank lines included, so data
    row ``i`` is row ``i + 2`` of a spreadsheet showing the file (row 1 is the header). A
    blank line gives no row of its own; a line whose domain field is empty (``""`` or
    ``,x``) is ``invalid`` with reason ``empty``. In a parquet file ``i`` is the row position.

    Raises
    ------
    ConfigError
        The file does not exist or lacks ``domain_column`` (the columns it has are listed).
    LogoFetchError
        The file cannot be parsed.
    """
    df = _read_list(path, domain_column, "domain_column")
    column = df[domain_column]
    return normalize_domains(column.tolist(), allow_ip=allow_ip, rows=column.index.tolist())


def _read_list(path, column: str, what: str) -> pd.DataFrame:
    """The domain list as read, indexed by data-row number (see :func:`read_domains`)."""
    path = resolve(path)
    if not path.exists():
        raise ConfigError(f"domain list not found: {path}; pass the path of a CSV or parquet")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path).reset_index(drop=True)
        else:
            sep = "\t" if path.suffix == ".tsv" else ","
            df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
            df.index = _data_row_numbers(path, sep, len(df))
    except Exception as exc:
        raise LogoFetchError(f"cannot read domain list {path}: {exc}") from exc
    if column not in df.columns:
        raise ConfigError(
            f"{path} has no column {column!r}; its columns are {list(df.columns)}. "
            f"Pass {what}= with the right name."
        )
    return df


def domain_labels(
    path, label_column: str, *, domain_column: str = "domain", allow_ip: bool = False
) -> dict[str, str]:
    """A name for each domain of a list, from another of its columns (a company name...).

    Returns ``{normalized domain: name}``: the first non-empty ``label_column`` value among
    the rows that spell the domain (see :func:`read_domains`); domains without one are left
    out (their label stays the domain).
    """
    table = _read_list(path, label_column, "label_column")
    names = table[label_column].astype("string").str.strip()
    out: dict[str, str] = {}
    for rec in read_domains(path, domain_column=domain_column, allow_ip=allow_ip).itertuples():
        if rec.status != "ok":
            continue
        given = [names.get(i) for i in rec.input_rows]
        first = next((str(n) for n in given if n is not None and not pd.isna(n) and n), None)
        if first is not None:
            out[str(rec.domain)] = first
    return out


def domain_rows(domains, *, domain_column: str = "domain", allow_ip: bool = False) -> list[dict]:
    """The rows of :func:`normalize_domains` as dicts (missing values as None).

    ``domains`` is a CSV/parquet path (read with :func:`read_domains`), its output, a
    DataFrame with a ``domain_column``, or an iterable of raw spellings.
    """
    if isinstance(domains, (str, Path)):
        domains = read_domains(domains, domain_column=domain_column, allow_ip=allow_ip)
    elif isinstance(domains, bytes):
        raise ConfigError("fetch_logos needs a path or a list of domains, not bytes")
    if isinstance(domains, pd.DataFrame):
        if not {"domain", "status", "input_rows", "raw"} <= set(domains.columns):
            column = domain_column if domain_column in domains.columns else "domain"
            if column not in domains.columns:
                raise ConfigError(
                    f"domains DataFrame has no {domain_column!r} column; it has "
                    f"{list(domains.columns)}. Pass domain_column= or read_domains(path)."
                )
            domains = normalize_domains(domains[column].tolist(), allow_ip=allow_ip)
    else:
        domains = normalize_domains(list(domains), allow_ip=allow_ip)
    rows = []
    for rec in domains.to_dict("records"):
        rec = {k: (None if not isinstance(v, list) and pd.isna(v) else v) for k, v in rec.items()}
        rec["input_rows"] = [int(i) for i in rec.get("input_rows") or []]
        rows.append(rec)
    return rows
