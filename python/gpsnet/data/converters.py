"""Converters from MHP v1, MHP v2 and CIHP into the GPS layout (docs/data.md has the class maps).

`gpsnet convert --from mhp1|mhp2|cihp SRC OUT [--split 3:1:1] [--seed 0] [--all-to SPLIT] [--overwrite]`

- MHP v1: `SRC/images/<id>.jpg`, `SRC/annotations/<id>_<NN>_<MM>.png` (its 19 classes).
  `SRC/train_list.txt` / `SRC/test_list.txt` (image file names), when present, give the splits:
  train_list is cut 3:1 into train/val, test_list is test.
- MHP v2: `SRC/images/<id>.jpg`, `SRC/parsing_annos/<id>_<NN>_<MM>.png` (58 fine classes).
  `SRC/list/{train,val,test}.txt` (ids), when present, give the splits.
- CIHP (one folder such as `instance-level_human_parsing/Training`): `SRC/Images/<id>.jpg`,
  `SRC/Category_ids/<id>.png` (LIP's 20 classes) and `SRC/Human_ids/<id>.png` (0 background,
  k = person k; `Instance_ids/` is used when `Human_ids/` is absent). Persons are numbered left to
  right by the centre of their box. `SRC/<name>_id.txt` lists, when present, select the ids.

Without source lists the ids are shuffled with `--seed` and cut by `--split`; `--all-to SPLIT` puts
every id into one split. Listed ids without an image are dropped with a warning naming the list;
a split given by a source list that ends empty is an error. OUT must be a new or empty folder
(`--overwrite` replaces a previous conversion wholly) apart from SRC. Every problem raises
GPSDataError naming the file.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from gpsnet.classes import CLASS_ID, IGNORE_LABEL, NUM_CLASSES
from gpsnet.data.layout import (JPEG_SUFFIXES, LAYOUT_DIRS, PNG_SUFFIX, SPLITS, AnnotationIndex, GPSDataError,
                                annotation_path, check_image_id, encode_png, image_path, index_person_files,
                                mask_box, parse_id_lines, person_files, read_image, read_label, write_split)
from gpsnet.data.outputs import OVERWRITE_FLAG, check_apart, make_folder, prepare_output_folder, write_file
from gpsnet.data.synthetic import parse_ratios, split_ids

C = CLASS_ID
IGN = IGNORE_LABEL
IMAGE_SUFFIXES: tuple[str, ...] = JPEG_SUFFIXES + (PNG_SUFFIX,)

# ----------------------------------------------------------------------------- class maps

MHP1_NAMES: tuple[str, ...] = (
    "background", "hat", "hair", "sunglasses", "upper-clothes", "skirt", "pants", "dress", "belt",
    "left-shoe", "right-shoe", "face", "left-leg", "right-leg", "left-arm", "right-arm", "bag", "scarf",
    "torso-skin")
# MHP v1 -> GPS: identical ids 0..17; torso-skin (18) -> 255 (ignored: a person's pixel with no GPS class).
MHP1_MAP: dict[int, int] = {i: i for i in range(18)} | {18: IGN}

MHP2_NAMES: tuple[str, ...] = (
    "background", "cap/hat", "helmet", "face", "hair", "left-arm", "right-arm", "left-hand", "right-hand",
    "protector", "bikini/bra", "jacket/windbreaker/hoodie", "t-shirt", "polo-shirt", "sweater", "singlet",
    "torso-skin", "pants", "shorts/swim-shorts", "skirt", "stockings", "socks", "left-boot", "right-boot",
    "left-shoe", "right-shoe", "left-highheel", "right-highheel", "left-sandal", "right-sandal", "left-leg",
    "right-leg", "left-foot", "right-foot", "coat", "dress", "robe", "jumpsuits", "other-full-body-clothes",
    "headwear", "backpack", "ball", "bats", "belt", "bottle", "carrybag", "cases", "sunglasses", "eyewear",
    "gloves", "scarf", "umbrella", "wallet/purse", "watch", "wristband", "tie", "other-accessaries",
    "other-upper-body-clothes", "other-lower-body-clothes")
_MHP2_BY_NAME: dict[str, int] = {
    "background": 0, "cap/hat": C["hat"], "helmet": C["hat"], "headwear": C["hat"], "face": C["face"],
    "hair": C["hair"], "left-arm": C["left-arm"], "left-hand": C["left-arm"], "right-arm": C["right-arm"],
    "right-hand": C["right-arm"], "protector": C["upper-clothes"], "bikini/bra": C["upper-clothes"],
    "jacket/windbreaker/hoodie": C["upper-clothes"], "t-shirt": C["upper-clothes"],
    "polo-shirt": C["upper-clothes"], "sweater": C["upper-clothes"], "singlet": C["upper-clothes"],
    "coat": C["upper-clothes"], "other-upper-body-clothes": C["upper-clothes"], "torso-skin": IGN,
    "pants": C["pants"], "shorts/swim-shorts": C["pants"], "other-lower-body-clothes": C["pants"],
    "skirt": C["skirt"], "stockings": C["socks"], "socks": C["socks"],
    "left-boot": C["left-shoe"], "left-shoe": C["left-shoe"], "left-highheel": C["left-shoe"],
    "left-sandal": C["left-shoe"], "right-boot": C["right-shoe"], "right-shoe": C["right-shoe"],
    "right-highheel": C["right-shoe"], "right-sandal": C["right-shoe"],
    "left-leg": C["left-leg"], "left-foot": C["left-leg"], "right-leg": C["right-leg"], "right-foot": C["right-leg"],
    "dress": C["dress"], "robe": C["dress"], "jumpsuits": C["dress"], "other-full-body-clothes": C["dress"],
    "backpack": C["bag"], "carrybag": C["bag"], "cases": C["bag"], "wallet/purse": C["bag"],
    "belt": C["belt"], "sunglasses": C["sunglasses"], "eyewear": C["sunglasses"], "scarf": C["scarf"],
    "tie": C["tie"], "gloves": IGN, "watch": IGN, "wristband": IGN, "other-accessaries": IGN,
    "ball": 0, "bats": 0, "bottle": 0, "umbrella": 0,
}
MHP2_MAP: dict[int, int] = {i: _MHP2_BY_NAME[name] for i, name in enumerate(MHP2_NAMES)}

LIP_NAMES: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants",
    "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg", "right-leg", "left-shoe",
    "right-shoe")
_LIP_BY_NAME: dict[str, int] = {
    "background": 0, "hat": C["hat"], "hair": C["hair"], "glove": IGN, "sunglasses": C["sunglasses"],
    "upper-clothes": C["upper-clothes"], "dress": C["dress"], "coat": C["upper-clothes"], "socks": C["socks"],
    "pants": C["pants"], "jumpsuits": C["dress"], "scarf": C["scarf"], "skirt": C["skirt"], "face": C["face"],
    "left-arm": C["left-arm"], "right-arm": C["right-arm"], "left-leg": C["left-leg"],
    "right-leg": C["right-leg"], "left-shoe": C["left-shoe"], "right-shoe": C["right-shoe"],
}
CIHP_MAP: dict[int, int] = {i: _LIP_BY_NAME[name] for i, name in enumerate(LIP_NAMES)}
assert len(MHP2_NAMES) == 59 and len(LIP_NAMES) == NUM_CLASSES


def make_lut(mapping: dict[int, int]) -> np.ndarray:
    """256-entry lookup table; source values outside `mapping` map to 256 (marked invalid)."""
    lut = np.full(256, 256, np.int32)
    for src, dst in mapping.items():
        lut[src] = dst
    lut[IGN] = IGN
    return lut


def map_labels(lab: np.ndarray, lut: np.ndarray, path: Path) -> np.ndarray:
    out = lut[lab]
    if (out == 256).any():
        bad = sorted(set(np.unique(lab[out == 256]).tolist()))
        raise GPSDataError(f"{path}: labels {bad[:10]} are not classes of this data set")
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------- writing

def _copy_image(src: Path, root: Path, image_id: str) -> tuple[int, int]:
    """Copy a JPEG as is (re-encode anything else); returns its (h, w)."""
    img = read_image(src)  # validates
    dst = image_path(root, image_id)
    make_folder(dst.parent, GPSDataError)
    if src.suffix.lower() in JPEG_SUFFIXES:
        data = src.read_bytes()
    else:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise GPSDataError(f"{dst}: JPEG encoding failed")
        data = buf.tobytes()
    write_file(dst, data, GPSDataError)
    return img.shape[0], img.shape[1]


def _write_persons(root: Path, image_id: str, persons: Sequence[np.ndarray]) -> None:
    n = len(persons)
    for k, lab in enumerate(persons, start=1):
        path = annotation_path(root, image_id, n, k)
        make_folder(path.parent, GPSDataError)
        write_file(path, encode_png(path, lab), GPSDataError)


def _find_image(folder: Path, image_id: str) -> Path:
    for ext in IMAGE_SUFFIXES:
        for e in (ext, ext.upper()):
            p = folder / f"{image_id}{e}"
            if p.is_file():
                return p
    raise GPSDataError(f"{folder / (image_id + '.jpg')}: missing image")


def _convert_per_person(src: Path, out: Path, image_id: str, ann_dir: str, lut: np.ndarray,
                        index: AnnotationIndex) -> int:
    img_file = _find_image(src / "images", image_id)
    h, w = _copy_image(img_file, out, image_id)
    persons = []
    for f in person_files(src / ann_dir, image_id, index):
        lab = map_labels(read_label(f, check_range=False), lut, f)
        if lab.shape != (h, w):
            raise GPSDataError(f"{f}: annotation size {lab.shape[1]}x{lab.shape[0]} differs from its image "
                               f"{img_file} ({w}x{h})")
        persons.append(lab)
    _write_persons(out, image_id, persons)
    return len(persons)


def _ids_from_dir(folder: Path) -> list[str]:
    """The ids of the images in a source folder, each checked by `check_image_id`."""
    if not folder.is_dir():
        raise GPSDataError(f"{folder}: missing image folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GPSDataError(f"{folder}: no images")
    seen: dict[str, Path] = {}
    for p in files:
        check_image_id(p.stem, p)
        if p.stem in seen:
            raise GPSDataError(f"{p}: image id {p.stem!r} also used by {seen[p.stem].name}")
        seen[p.stem] = p
    return list(seen)


def _listed_ids(path: Path, known: set[str]) -> list[str]:
    """The ids of a source list (one per line, `<id>` or an image file name), in file order: each
    checked by `check_image_id`, a repeated id an error; ids without an image are dropped with one
    warning giving their count. GPSDataError when none is left."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise GPSDataError(f"{path}: unreadable list ({err})") from None
    ids = parse_id_lines(text, path, to_id=lambda name: Path(name).stem if name.lower().endswith(IMAGE_SUFFIXES)
                         else name)
    kept = [i for i in ids if i in known]
    if len(kept) < len(ids):
        dropped = [i for i in ids if i not in known]
        warnings.warn(f"{path}: {len(dropped)} of {len(ids)} listed ids have no image; dropped "
                      f"({', '.join(dropped[:5])}{', ...' if len(dropped) > 5 else ''})", stacklevel=2)
    if not kept:
        raise GPSDataError(f"{path}: none of its {len(ids)} ids has an image in the source")
    return kept


# ----------------------------------------------------------------------------- the three sources

Splits = dict[str, list[str]]


def _convert_mhp(src: Path, out: Path, mapping: dict[int, int], ann_dir: str) -> list[str]:
    """Convert every image of an MHP release (one label PNG per person under ``ann_dir``); its ids."""
    lut = make_lut(mapping)
    ids = _ids_from_dir(src / "images")
    index = index_person_files(src / ann_dir)
    for image_id in ids:
        _convert_per_person(src, out, image_id, ann_dir, lut, index)
    return ids


def convert_mhp1(src: Path, out: Path) -> tuple[list[str], Splits | None]:
    ids = _convert_mhp(src, out, MHP1_MAP, "annotations")
    known = set(ids)
    splits: Splits = {}
    if (src / "train_list.txt").is_file():
        cut = split_ids(_listed_ids(src / "train_list.txt", known), (3, 1, 0), seed=0)
        splits.update(train=cut["train"], val=cut["val"])
    if (src / "test_list.txt").is_file():
        splits["test"] = sorted(_listed_ids(src / "test_list.txt", known))
    return ids, splits or None


def convert_mhp2(src: Path, out: Path) -> tuple[list[str], Splits | None]:
    ids = _convert_mhp(src, out, MHP2_MAP, "parsing_annos")
    known = set(ids)
    lists = {s: src / "list" / f"{s}.txt" for s in SPLITS}
    splits = {s: _listed_ids(p, known) for s, p in lists.items() if p.is_file()}
    return ids, splits or None


def cihp_persons(category: np.ndarray, humans: np.ndarray, cat_file: Path) -> list[np.ndarray]:
    """Per-person label maps from CIHP's category and human-id maps, ordered left to right."""
    persons = []
    for hid in np.unique(humans):
        if hid == 0 or hid == IGN:
            continue
        m = humans == hid
        lab = np.where(m, category, 0).astype(np.uint8)
        if not (lab != 0).any():
            continue
        persons.append(lab)
    if not persons:
        raise GPSDataError(f"{cat_file}: no person in the image")
    centres = [float(b[0] + b[2]) / 2 for b in (mask_box(p != 0) for p in persons)]
    order = sorted(range(len(persons)), key=lambda i: (centres[i], i))
    return [persons[i] for i in order]


def convert_cihp(src: Path, out: Path) -> tuple[list[str], Splits | None]:
    lut = make_lut(CIHP_MAP)
    ids = _ids_from_dir(src / "Images")
    human_dir = src / "Human_ids"
    if not human_dir.is_dir():
        human_dir = src / "Instance_ids"
        if not human_dir.is_dir():
            raise GPSDataError(f"{src / 'Human_ids'}: missing person-instance folder (Human_ids/ or Instance_ids/)")
    for image_id in ids:
        img_file = _find_image(src / "Images", image_id)
        h, w = _copy_image(img_file, out, image_id)
        cat_file = src / "Category_ids" / f"{image_id}.png"
        hum_file = human_dir / f"{image_id}.png"
        cat = map_labels(read_label(cat_file, check_range=False), lut, cat_file)
        hum = read_label(hum_file, check_range=False)
        for f, a in ((cat_file, cat), (hum_file, hum)):
            if a.shape != (h, w):
                raise GPSDataError(f"{f}: size {a.shape[1]}x{a.shape[0]} differs from its image {img_file} ({w}x{h})")
        _write_persons(out, image_id, cihp_persons(cat, hum, cat_file))
    lists = sorted(src.glob("*_id.txt"))
    if lists:
        known = set(ids)
        listed = {i for p in lists for i in _listed_ids(p, known)}
        ids = [i for i in ids if i in listed]
    return ids, None


CONVERTERS: dict[str, Callable[[Path, Path], tuple[list[str], Splits | None]]] = {
    "mhp1": convert_mhp1, "mhp2": convert_mhp2, "cihp": convert_cihp,
}


def convert(kind: str, src: str | Path, out: str | Path, ratios: Sequence[float] = (3, 1, 1), seed: int = 0,
            all_to: str | None = None, overwrite: bool = False) -> Splits:
    """Convert ``src`` into the GPS layout under ``out``: a new or empty folder apart from ``src``
    (``overwrite`` replaces a folder holding only a data set's folders). A split given by a
    source list must not end empty."""
    src, out = Path(src), Path(out)
    if kind not in CONVERTERS:
        raise ValueError(f"unknown source {kind!r} (one of {sorted(CONVERTERS)})")
    if not src.is_dir():
        raise GPSDataError(f"{src}: no such folder")
    check_apart(out, src, "the source folder", GPSDataError)
    prepare_output_folder(out, LAYOUT_DIRS, "GPS-layout data set", overwrite, GPSDataError)
    ids, splits = CONVERTERS[kind](src, out)
    if all_to is not None:
        splits = {s: (list(ids) if s == all_to else []) for s in SPLITS}
    elif splits is None:
        splits = split_ids(ids, ratios, seed)
    else:
        empty = [name for name, lst in splits.items() if not lst]
        if empty:
            raise GPSDataError(f"{src}: split {empty[0]!r} given by the source lists would be empty "
                               f"({', '.join(f'{k} {len(v)}' for k, v in splits.items())})")
    for name in SPLITS:
        splits[name] = list(splits.get(name, []))
        write_split(out, name, splits[name])
    return splits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet convert", description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="kind", required=True, choices=sorted(CONVERTERS))
    ap.add_argument("src", help="the source data set folder")
    ap.add_argument("out", help="the GPS-layout output folder (new or empty)")
    ap.add_argument("--split", type=parse_ratios, default=(3.0, 1.0, 1.0),
                    help="train:val:test ratios when the source has no lists (3:1:1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--all-to", choices=SPLITS, help="put every image into this split")
    ap.add_argument(OVERWRITE_FLAG, action="store_true",
                    help="replace OUT wholly when it holds a previous conversion")
    args = ap.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            splits = convert(args.kind, args.src, args.out, args.split, args.seed, args.all_to, args.overwrite)
    except GPSDataError as err:
        print(f"convert: {err}", file=sys.stderr)
        return 1
    finally:
        for w in caught:
            print(f"convert: warning: {w.message}", file=sys.stderr)
    print(f"convert: {args.kind} {args.src} -> {args.out}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
