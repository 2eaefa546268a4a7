"""Builds the outbound content policy's generated vocabularies (run by ./generate).

Reads the ICD-10-CM tabular list inside the simple-icd-10-cm wheel and the drug dictionary
inside the drug-named-entity-recognition wheel, and writes:

  icd10cm_codes.tsv  every ICD-10-CM code (dots removed) and, for sensitive blocks, its tag
  conditions.tsv     short head terms from ICD-10-CM titles, with their tag
  medications.tsv    drug names (generic and brand), with the sources behind each entry

The drug dictionary is a pickle: it is unpickled here, from the downloaded wheel, and
nowhere else. Nothing in this script reaches the network.
"""

import argparse
import bz2
import io
import pickle
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import names
import wordfreq

ICD_XML = "simple_icd_10_cm/data/icd10c-tabular-April-1-2026.xml"
ICD_CODE_LIST = "simple_icd_10_cm/data/code-list-April-2026.txt"
DRUG_PICKLE = "drug_named_entity_recognition/drug_ner_dictionary.pkl.bz2"

# Medications shorter than this collide with first names and words ("alli", "aman", "rela").
MIN_DRUG_LEN = 5
# Single words at least this frequent in English (Zipf scale: 3 = once per million words)
# are kept only when keep.txt names them.
DRUG_MAX_ZIPF = 2.5
CONDITION_MAX_ZIPF = 3.0
# A multi-word term needs one word rarer than this to be distinctive ("olive oil" is not).
DISTINCT_ZIPF = 3.0

# Title openings that describe encounters or leftovers rather than a condition.
TITLE_STOP_PREFIXES = (
    "other", "unspecified", "encounter", "personal history", "family history", "history",
    "abnormal", "problems", "outcome", "person", "persons", "contact", "exposure", "need",
    "status", "presence", "acquired absence", "long term", "underdosing", "poisoning",
    "adverse effect", "toxic effect", "effects", "sequelae", "complication", "complications",
    "observation", "screening", "examination", "follow-up", "aftercare", "fitting",
    "supervision", "maternal care", "disorders", "diseases", "symptoms", "signs", "findings",
    "injury", "injuries", "burn", "corrosion", "frostbite", "late effects", "elevated",
    "decreased", "increased", "low", "high", "certain", "general", "postprocedural",
    "intraoperative", "infection",
)
# Modifiers stripped from the front of a head term, so "acute bronchitis" also yields
# "bronchitis".
TITLE_MODIFIERS = (
    "acute", "chronic", "mild", "moderate", "severe", "congenital", "primary", "secondary",
    "localized", "generalized", "multiple", "single", "recurrent", "unspecified",
)


def tag_for(code: str) -> str:
    """The sensitive category of an ICD-10-CM code (dots removed), per the spec's blocks."""
    cat = code[:3]
    if "F10" <= cat <= "F19":
        return "substance_use"
    if cat[0] == "F":
        return "mental_health"
    if cat in ("B20", "Z21", "R75"):
        return "hiv"
    if "A50" <= cat <= "A64":
        return "sti"
    if cat[0] == "O" or "Z30" <= cat <= "Z39" or "N96" <= cat <= "N98":
        return "reproductive_health"
    return ""


def read_lines(path: Path) -> set:
    out = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip().lower()
        if line:
            out.add(line)
    return out


def zipf(word: str) -> float:
    return wordfreq.zipf_frequency(word, "en")


def distinctive(term: str) -> bool:
    """Single words: not frequent English. Several words: at least one rare word."""
    words = [w for w in re.split(r"[ \-']", term) if w]
    if len(words) == 1:
        return True
    return any(len(w) >= 4 and zipf(w) < DISTINCT_ZIPF for w in words)


def icd_entries(wheel: Path):
    with zipfile.ZipFile(wheel) as z:
        root = ET.parse(io.BytesIO(z.read(ICD_XML))).getroot()
    for diag in root.iter("diag"):
        yield diag.findtext("name").strip(), diag.findtext("desc").strip()


def head_terms(title: str):
    """Short lay-matchable pieces of a title: the part before a comma, split on 'and'."""
    t = re.sub(r"\s*[\(\[][^\)\]]*[\)\]]", "", title).lower().strip()
    head = t.split(",", 1)[0].strip()
    pieces = [head] + [p.strip() for p in re.split(r"\band\b|\bor\b", head) if p.strip()]
    for p in list(pieces):
        words = p.split()
        while words and words[0] in TITLE_MODIFIERS:
            words = words[1:]
        pieces.append(" ".join(words))
    for p in pieces:
        words = p.split()
        if not (1 <= len(words) <= 4):
            continue
        if any(p == s or p.startswith(s + " ") for s in TITLE_STOP_PREFIXES):
            continue
        if words[-1] in ("of", "in", "with", "to", "by", "due", "without", "and", "the"):
            continue
        if not re.fullmatch(r"[a-z][a-z' \-]*[a-z]", p) or len(p) < 4:
            continue
        yield p


def build_icd(wheel: Path, stop: set, keep: set, people: set, out: Path):
    # The code list has every code, including seventh-character extensions that the tabular
    # XML only describes by rule; it also lists chapters and blocks, which are skipped.
    with zipfile.ZipFile(wheel) as z:
        listed = z.read(ICD_CODE_LIST).decode().split()
    codes = [(c, tag_for(c)) for c in listed if re.fullmatch(r"[A-Z][0-9][0-9A-Z]{1,5}", c)]
    terms = {}
    for name, desc in icd_entries(wheel):
        code = name.replace(".", "").upper()
        tag = tag_for(code)
        # Chapters S-T (injuries, poisonings), V-Y (external causes) and Z (encounters, status)
        # name circumstances and body sites rather than lay condition names;
        # the sensitive Z blocks are covered by the curated lexicons.
        if code[0] in "STVWXYZ":
            continue
        for term in head_terms(desc):
            if term in stop or (term in people and term not in keep):
                continue
            if " " not in term and "-" not in term and zipf(term) >= CONDITION_MAX_ZIPF:
                if term not in keep:
                    continue
            if not distinctive(term) and term not in keep:
                continue
            # A term seen under a sensitive block keeps that tag.
            if not terms.get(term):
                terms[term] = tag
    codes.sort()
    with open(out / "icd10cm_codes.tsv", "w") as f:
        f.write("# ICD-10-CM April 2026 (CDC/NCHS) via simple-icd-10-cm 1.5.0; see NOTICE\n")
        for code, tag in codes:
            f.write(f"{code}\t{tag}\n" if tag else f"{code}\n")
    with open(out / "conditions.tsv", "w") as f:
        f.write("# Head terms of ICD-10-CM April 2026 titles (CDC/NCHS); see NOTICE\n")
        for term in sorted(terms):
            tag = terms[term]
            f.write(f"{term}\t{tag}\n" if tag else f"{term}\n")
    return len(codes), len(terms)


def first_names() -> set:
    base = Path(names.__file__).parent
    out = set()
    for fname in ("dist.female.first", "dist.male.first"):
        for line in (base / fname).read_text().splitlines():
            if line.strip():
                out.add(line.split()[0].lower())
    return out


def build_drugs(wheel: Path, stop: set, keep: set, people: set, out: Path):
    with zipfile.ZipFile(wheel) as z:
        data = pickle.load(bz2.open(io.BytesIO(z.read(DRUG_PICKLE))))
    variant_to_canonical = data["drug_variant_to_canonical"]
    canonical_data = data["drug_canonical_to_data"]
    source_keys = {
        "drugbank_id": "drugbank",
        "medline_plus_id": "medlineplus",
        "nhs_url": "nhs",
        "wikipedia_url": "wikipedia",
        "mesh_id": "mesh",
    }
    shape = re.compile(r"[a-z][a-z' \-]*[a-z]")
    kept = {}
    dropped = {"mesh_only": 0, "shape": 0, "common_word": 0, "first_name": 0, "stoplist": 0}
    for variant, canonicals in variant_to_canonical.items():
        v = variant.lower().strip()
        sources = set()
        for c in canonicals:
            for key, label in source_keys.items():
                if key in canonical_data.get(c, {}):
                    sources.add(label)
        # MeSH-only entries are mostly chemicals, proteins, foods and allergen extracts
        # ("olive oil", "table salt"): noise in reminders, so they are left out.
        if not sources - {"mesh"}:
            dropped["mesh_only"] += 1
            continue
        if len(v) < MIN_DRUG_LEN or len(v) > 40 or not shape.fullmatch(v) or len(v.split()) > 3:
            dropped["shape"] += 1
            continue
        if v in stop:
            dropped["stoplist"] += 1
            continue
        if v in people and v not in keep:
            dropped["first_name"] += 1
            continue
        single = " " not in v and "-" not in v
        if (single and zipf(v) >= DRUG_MAX_ZIPF or not distinctive(v)) and v not in keep:
            dropped["common_word"] += 1
            continue
        kept.setdefault(v, set()).update(sources)
    with open(out / "medications.tsv", "w") as f:
        f.write(
            "# drug-named-entity-recognition 2.0.9 dictionary (DrugBank Open Data CC0, MeSH, "
            "MedlinePlus, NHS, Wikipedia CC BY-SA 3.0); see NOTICE\n"
        )
        for v in sorted(kept):
            f.write(f"{v}\t{','.join(sorted(kept[v]))}\n")
    wiki_only = sum(1 for s in kept.values() if s <= {"wikipedia", "mesh"})
    return len(kept), wiki_only, dropped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--icd-wheel", type=Path, required=True)
    ap.add_argument("--drug-wheel", type=Path, required=True)
    ap.add_argument("--stoplist", type=Path, required=True)
    ap.add_argument("--keep", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    stop = read_lines(a.stoplist)
    keep = read_lines(a.keep)
    people = first_names()
    n_codes, n_terms = build_icd(a.icd_wheel, stop, keep, people, a.out)
    n_drugs, wiki_only, dropped = build_drugs(a.drug_wheel, stop, keep, people, a.out)
    print(f"icd10cm codes: {n_codes}; condition head terms: {n_terms}")
    print(f"medications: {n_drugs} ({wiki_only} from Wikipedia or MeSH only); dropped {dropped}")


if __name__ == "__main__":
    main()
