"""Rule-based text front end: normalisation and segmenting, Chinese, English and mixed."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

_ZH_DIGITS: Final = "零一二三四五六七八九"
_ZH_SMALL_UNITS: Final = ((1000, "千"), (100, "百"), (10, "十"), (1, ""))
_ZH_BIG_UNITS: Final = ("", "万", "亿")

_EN_ONES: Final = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_EN_TENS: Final = (
    "",
    "",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "seventy",
    "eighty",
    "ninety",
)
_EN_SCALES: Final = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))

_ABBREVIATIONS: Final = {
    "Dr.": "Doctor",
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "vs.": "versus",
    "etc.": "et cetera",
    "e.g.": "for example",
    "i.e.": "that is",
}
_ABBREVIATION_RE: Final = re.compile("|".join(re.escape(a) for a in _ABBREVIATIONS))
# Letters are spelled out; a plural "s" stays ("GPUs" -> "G P Us").
_ACRONYM_RE: Final = re.compile(r"(?<![A-Za-z])[A-Z]{2,6}(?=s?(?![A-Za-z]))")
_YEAR_RE: Final = re.compile(r"\d{4}(?=年)")
_NUMBER_RE: Final = re.compile(r"\d+(?:\.\d+)?%?")
_SPACE_RE: Final = re.compile(r"\s+")
# Sentence and clause ends; a '.' only after a lower-case word of three letters
# or more, so "3.5", "Dr." and "e.g." do not end a segment.
_BOUNDARY_RE: Final = re.compile(r"(?<=[。！？；，、!?;,])|(?<=[a-z]{3}\.)(?=\s|$)")
# Largest number read out with units; longer ones (phone numbers, ids) go digit by digit.
_MAX_READ_OUT: Final = 10**12


def is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf"


def language(text: str) -> str:
    """``zh``, ``en`` or ``mixed``: which scripts the text's letters are in."""
    cjk = sum(1 for c in text if is_cjk(c))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    if cjk and latin:
        return "mixed"
    return "zh" if cjk else "en"


def _zh_group(n: int) -> str:
    """0 < n < 10000 in Chinese, with 零 for inner gaps."""
    out, gap = "", False
    for value, unit in _ZH_SMALL_UNITS:
        digit = n // value % 10
        if digit:
            out += ("零" if gap else "") + _ZH_DIGITS[digit] + unit
            gap = False
        elif out:
            gap = True
    return out


def zh_number(n: int) -> str:
    if n == 0:
        return _ZH_DIGITS[0]
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out = ""
    for index in reversed(range(len(groups))):
        group = groups[index]
        if group == 0:
            continue
        if out and group < 1000:
            out += "零"
        out += _zh_group(group) + _ZH_BIG_UNITS[index]
    # 一十五 is read 十五.
    return out[1:] if out.startswith("一十") else out


def en_number(n: int) -> str:
    if n < 20:
        return _EN_ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _EN_TENS[tens] + ("-" + _EN_ONES[ones] if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _EN_ONES[hundreds] + " hundred" + (" " + en_number(rest) if rest else "")
    for value, name in _EN_SCALES:
        if n >= value:
            high, rest = divmod(n, value)
            return en_number(high) + " " + name + (" " + en_number(rest) if rest else "")
    raise AssertionError("unreachable: scales cover every n >= 1000")


def _read_number(token: str, chinese: bool) -> str:
    percent = token.endswith("%")
    digits = token.rstrip("%")
    whole, _, fraction = digits.partition(".")
    value = int(whole)
    if value >= _MAX_READ_OUT:
        spoken = (
            "".join(_ZH_DIGITS[int(d)] for d in whole)
            if chinese
            else " ".join(_EN_ONES[int(d)] for d in whole)
        )
    else:
        spoken = zh_number(value) if chinese else en_number(value)
    if fraction:
        if chinese:
            spoken += "点" + "".join(_ZH_DIGITS[int(d)] for d in fraction)
        else:
            spoken += " point " + " ".join(_EN_ONES[int(d)] for d in fraction)
    if percent:
        spoken = "百分之" + spoken if chinese else spoken + " percent"
    return spoken


def _numbers(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        start, end = match.span()
        around = text[max(0, start - 2) : start] + text[end : end + 2]
        chinese = any(is_cjk(c) for c in around)
        spoken = _read_number(match.group(), chinese)
        return spoken if chinese else f" {spoken} "

    return _NUMBER_RE.sub(replace, text)


def normalize(text: str) -> str:
    """Spoken form: full-width to half-width, abbreviations, acronyms, numbers, spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _ABBREVIATION_RE.sub(lambda m: _ABBREVIATIONS[m.group()], text)
    text = _ACRONYM_RE.sub(lambda m: " ".join(m.group()), text)
    text = _YEAR_RE.sub(lambda m: "".join(_ZH_DIGITS[int(d)] for d in m.group()), text)
    text = _numbers(text)
    return _SPACE_RE.sub(" ", text).strip()


def split_segments(text: str, min_len: int = 30, max_len: int = 60) -> list[str]:
    """Split at sentence and clause ends into segments of about ``min_len``..``max_len``.

    Pieces are joined until a segment reaches ``min_len``; a piece longer than
    ``max_len`` with no boundary inside is cut at its last space before
    ``max_len`` (or at ``max_len`` when it has none, as Chinese text).
    """
    pieces = [p for p in _BOUNDARY_RE.split(text) if p.strip()]
    segments: list[str] = []
    current = ""
    for piece in pieces:
        while len(piece) > max_len:
            if current:
                segments.append(current)
                current = ""
            cut = piece.rfind(" ", 1, max_len)
            cut = cut if cut > 0 else max_len
            segments.append(piece[:cut])
            piece = piece[cut:]
        if current and len(current) + len(piece) > max_len:
            segments.append(current)
            current = ""
        current += piece
        if len(current) >= min_len:
            segments.append(current)
            current = ""
    if current.strip():
        if segments and len(segments[-1]) + len(current) <= max_len:
            segments[-1] += current
        else:
            segments.append(current)
    return [s.strip() for s in segments if s.strip()]


def spoken_seconds(text: str) -> float:
    """Rough speech duration: ~4.5 Chinese characters or ~14 Latin letters a second."""
    cjk = sum(1 for c in text if is_cjk(c))
    other = sum(1 for c in text if c.isalnum() and not is_cjk(c))
    return max(0.4, cjk * 0.22 + other * 0.07)
