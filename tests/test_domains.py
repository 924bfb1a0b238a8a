"""lookalike.domains: user spellings of sites reduced to bare ASCII domains, deduplicated."""

from __future__ import annotations

import pandas as pd
import pytest

from lookalike import domains
from lookalike.exceptions import ConfigError


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("example.com", "example.com"),
        ("  https://www.Example.COM:8443/path?q=1#x ", "example.com"),
        ("HTTP://user:pw@Shop.Example.co.uk./", "shop.example.co.uk"),
        ("www.example.com.", "example.com"),
        ("//cdn.example.com/x.png", "cdn.example.com"),
        ("www.com", "www.com"),
        ("Bücher.de", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        (float("nan"), "empty"),
        ("https://", "empty"),
        ("foo bar.com", "has_space"),
        ("localhost", "no_dot"),
        ("http://intranet/", "no_dot"),
        ("192.168.1.1", "ip_not_allowed"),
        ("http://[::1]:8080/", "ip_not_allowed"),
        ("a..b.com", "invalid_idna"),
        ("-bad-.com", "invalid_idna"),
        ("under_score.com", "invalid_idna"),
        ("x" * 64 + ".com", "invalid_idna"),
    ],
)
def test_normalize_domain(raw, expected):
    if "." in expected:
        assert domains.normalize_domain(raw) == expected
    else:
        with pytest.raises(ValueError, match=f"^{expected}") as info:
            domains.normalize_domain(raw)
        assert info.value.reason == expected


def test_normalize_domain_ip_allowed():
    assert domains.normalize_domain("http://192.168.1.1:80/", allow_ip=True) == "192.168.1.1"
    assert domains.normalize_domain("[::1]", allow_ip=True) == "::1"


def test_read_domains_dedupes_spellings_and_keeps_invalid_rows(tmp_path):
    src = pd.DataFrame(
        {
            "site": [
                "Example.com",
                "https://www.example.com/",
                "other.org",
                "",
                "bad domain",
                "EXAMPLE.COM.",
                "",
            ]
        }
    )
    src.to_csv(tmp_path / "d.csv", index=False)
    src.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        df = domains.read_domains(tmp_path / name, domain_column="site")
        assert list(df.columns) == ["domain", "input_rows", "raw", "status", "reason"]
        assert df["domain"].tolist()[:2] == ["example.com", "other.org"]
        assert df.loc[0, "input_rows"] == [0, 1, 5] and df.loc[0, "raw"] == "Example.com"
        invalid = df[df.status == "invalid"]
        assert invalid["reason"].tolist() == ["empty", "has_space"]
        assert invalid["input_rows"].tolist() == [[3, 6], [4]]
    with pytest.raises(ConfigError, match=r"no column 'domain'.*\['site'\]"):
        domains.read_domains(tmp_path / "d.csv")
    with pytest.raises(ConfigError, match="not found"):
        domains.read_domains(tmp_path / "missing.csv")
