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


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("idn-dot\u3002logo\u3002test", "idn-dot.logo.test"),  # ideographic full stop
        ("idn-dot\uff0elogo\uff0etest", "idn-dot.logo.test"),  # full-width full stop
        ("idn-dot\uff61logo\uff61test", "idn-dot.logo.test"),  # half-width ideographic
        ("https://www\u3002B\u00fccher\u3002de/", "xn--bcher-kva.de"),
        ("\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "example.com"),  # full-width letters
    ],
)
def test_uts46_dots_and_full_width_forms_are_mapped(raw, expected):
    # Before: "idn-dot。logo。test" was refused as no_dot (the "." test ran before UTS 46).
    assert domains.normalize_domain(raw) == expected


def test_input_rows_count_blank_lines_like_a_spreadsheet(tmp_path):
    # Data row i is spreadsheet row i + 2 (row 1 is the header), blank lines included.
    # Before, pandas dropped the blank lines before numbering: beta.test was row 1, not 3.
    path = tmp_path / "d.csv"
    path.write_text('domain,note\nacme.test,a\n\n\nbeta.test,b\n"",c\n,d\n\nacme.test,e\n')
    df = domains.read_domains(path).set_index("raw")
    assert df.loc["acme.test", "input_rows"] == [0, 7]
    assert df.loc["beta.test", "input_rows"] == [3]
    assert df.loc["", "input_rows"] == [4, 5] and df.loc["", "reason"] == "empty"
    assert len(df) == 3  # blank lines are counted, but are not inputs
    lines = path.read_text().splitlines()
    assert lines[3 + 1].startswith("beta.test")  # spreadsheet row 5 = file line 5 (1-based)


def test_domain_labels_from_another_column(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(
        "domain,company\n"
        "https://www.Acme.test/,\n"  # no name here, but on the next spelling of it
        "acme.test,Acme Inc.\n"
        "beta.test,  Beta  \n"
        "not a domain,Nobody\n"
        "gamma.test,\n"
    )
    assert domains.domain_labels(path, "company") == {"acme.test": "Acme Inc.", "beta.test": "Beta"}
    with pytest.raises(ConfigError, match="no column 'name'.*label_column="):
        domains.domain_labels(path, "name")
