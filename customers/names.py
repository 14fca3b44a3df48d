"""Company-name normalisation for matching Keepit accounts to PSA customers.

"Contoso, Inc." / "CONTOSO INC" / "Contoso" all normalise to "contoso"; "Müller & Söhne
GmbH" and "Muller and Sohne" both to "muller and sohne". The result is only a matching
key: the customer's name as the MSP typed it is never changed.
"""

from __future__ import annotations

import re
import unicodedata

# Legal-form suffixes folded away, written as they look after punctuation is removed
# (so "A/S" is "a s", "S.A." is "s a"). Longest first so "pty ltd" wins over "ltd".
LEGAL_SUFFIXES: tuple[str, ...] = tuple(
    sorted(
        {
            "inc",
            "incorporated",
            "llc",
            "l l c",
            "ltd",
            "limited",
            "corp",
            "corporation",
            "co",
            "company",
            "gmbh",
            "gmbh co kg",
            "co kg",
            "kg",
            "ag",
            "a s",
            "as",
            "aps",
            "ab",
            "bv",
            "b v",
            "nv",
            "n v",
            "sa",
            "s a",
            "sas",
            "sarl",
            "srl",
            "spa",
            "oy",
            "pty",
            "pty ltd",
            "plc",
            "llp",
            "lp",
            "pc",
            "pllc",
            "asa",
            "se",
            "kft",
            "sp z o o",
        },
        key=len,
        reverse=True,
    )
)
_SUFFIX_RE = re.compile(r"(?:\s(?:" + "|".join(re.escape(s) for s in LEGAL_SUFFIXES) + r"))+$")
_NON_WORD_RE = re.compile(r"[^a-z0-9]+")


def normalize_company_name(name: str) -> str:
    """The matching key of a company name: lower-case ASCII words, "&" spelled "and",
    punctuation and legal suffixes removed, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", name)
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = ascii_only.casefold().replace("ß", "ss").replace("&", " and ").replace("+", " and ")
    text = _NON_WORD_RE.sub(" ", text).strip()
    stripped = _SUFFIX_RE.sub("", " " + text).strip()
    # A name that is nothing but a legal form ("AB") keeps it rather than becoming empty.
    return stripped or text
