"""Company-name normalisation for matching vendor accounts to PSA customers.

"Contoso, Inc." / "CONTOSO INC" / "Contoso" all normalise to "contoso"; "Müller & Söhne
GmbH" and "Muller and Sohne" both to "muller and sohne"; "Møller A/S" to "moller" and
"Søren Ærø ApS" to "soren aero". Letters outside ASCII are transliterated first
(anyascii: ø → o, æ → ae, ł → l, đ → d, ß → ss, ş → s), never dropped, so Nordic,
Polish, Turkish and other names match instead of colliding. The result is only a
matching key: the customer's name as the MSP typed it is never changed.
"""

from __future__ import annotations

import re

from anyascii import anyascii

# Legal-form suffixes folded away, written as they look after transliteration and with
# punctuation removed (so "A/S" is "a s", "S.A." is "s a", "Ltd. Şti." is "ltd sti").
# Longest first so "pty ltd" wins over "ltd".
LEGAL_SUFFIXES: tuple[str, ...] = tuple(
    sorted(
        {
            # English-speaking countries
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
            # "& Co" is written "and co" by the time suffixes are folded
            "and co",
            "and company",
            "plc",
            "llp",
            "lp",
            "pc",
            "pllc",
            "pty",
            "pty ltd",
            # German-speaking countries
            "gmbh",
            "gmbh co kg",
            "gmbh and co kg",
            "co kg",
            "and co kg",
            "kg",
            "ag",
            "ug",
            "ohg",
            "e k",
            "kgaa",
            "se",
            # Nordic countries
            "a s",
            "as",
            "asa",
            "aps",
            "i s",
            "k s",
            "p s",
            "amba",
            "a m b a",
            "ab",
            "publ",
            "ab publ",
            "hb",
            "kb",
            "oy",
            "oyj",
            "ky",
            "ehf",
            "hf",
            # Benelux
            "bv",
            "b v",
            "nv",
            "n v",
            "bvba",
            "vof",
            # French, Spanish, Portuguese, Italian
            "sa",
            "s a",
            "sas",
            "sasu",
            "sarl",
            "eurl",
            "snc",
            "sl",
            "s l",
            "slu",
            "sa de cv",
            "ltda",
            "lda",
            "srl",
            "s r l",
            "spa",
            "s p a",
            # Central and Eastern Europe, Turkey
            "sp z o o",
            "spolka z o o",
            "s r o",
            "sro",
            "d o o",
            "doo",
            "kft",
            "zrt",
            "ltd sti",
            "sti",
        },
        key=len,
        reverse=True,
    )
)
_SUFFIX_RE = re.compile(r"(?:\s(?:" + "|".join(re.escape(s) for s in LEGAL_SUFFIXES) + r"))+$")
_NON_WORD_RE = re.compile(r"[^a-z0-9]+")
# "and" as the languages of our MSPs' customers write it, as a whole word.
_AND_RE = re.compile(r"\b(?:og|und|och|et)\b")


def normalize_company_name(name: str) -> str:
    """The matching key of a company name: transliterated lower-case ASCII words, "&"
    (and "og", "und", "och", "et") spelled "and", punctuation and legal suffixes
    removed, whitespace collapsed."""
    text = anyascii(name).casefold().replace("&", " and ").replace("+", " and ")
    text = _NON_WORD_RE.sub(" ", text).strip()
    text = _AND_RE.sub("and", text)
    stripped = _SUFFIX_RE.sub("", " " + text).strip()
    # A name that is nothing but a legal form ("AB") keeps it rather than becoming empty.
    return stripped or text
