"""A synthetic GPS-layout data set: groups of drawn people on cluttered backgrounds.

`gpsnet make-data --out DIR [--num N] [--size 512] [--seed 0] [--scene indoor|outdoor|mixed]
[--split 3:1:1] [--preview sheet.png] [--overwrite]` writes `images/`, `annotations/` and `lists/`
(docs/data.md) into a new or empty DIR (`--overwrite` replaces a previous data set wholly).

Each image holds 2..10 persons (a shifted, truncated Poisson count with mean 5.23 indoors and
3.54 outdoors, the GPS statistics). Persons are drawn back to front with OpenCV polygons, lines and
ellipses; each person's annotation holds only its visible pixels. Left and right are the person's
own: a person facing the camera has its left arm on the image's right; a person facing away shows
no face and has its left arm on the image's left. The output is a pure function of the seed.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from gpsnet.classes import CLASS_ID, NUM_CLASSES, colorize
from gpsnet.data.layout import LAYOUT_DIRS, GPSDataError, mask_box, write_sample, write_split
from gpsnet.data.outputs import OVERWRITE_FLAG, prepare_output_folder

C = CLASS_ID
SCENES = ("indoor", "outdoor", "mixed")
MEAN_PERSONS = {"indoor": 5.23, "outdoor": 3.54}
MIN_PERSONS, MAX_PERSONS = 2, 10
CLOTHES = (C["hat"], C["upper-clothes"], C["skirt"], C["pants"], C["dress"], C["scarf"],
           C["bag"], C["socks"], C["tie"])
SKIN_TONES = ((150, 180, 225), (120, 155, 205), (90, 120, 170), (60, 85, 125), (170, 200, 235),
              (45, 60, 95))
HAIR_TONES = ((20, 20, 25), (30, 45, 70), (40, 80, 140), (120, 170, 210), (160, 160, 165),
              (25, 30, 90))


# ----------------------------------------------------------------------------- counts

def _count_pmf(mean: float) -> np.ndarray:
    """P(n) for n = 2..10: 2 + Poisson(lam) truncated at 10, lam chosen so that the mean is `mean`."""
    ks = np.arange(0, MAX_PERSONS - MIN_PERSONS + 1)
    logfact = np.array([math.lgamma(k + 1) for k in ks])

    def pmf(lam: float) -> np.ndarray:
        logp = ks * math.log(lam) - lam - logfact
        p = np.exp(logp - logp.max())
        return p / p.sum()

    lo, hi = 1e-3, 50.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if MIN_PERSONS + float((pmf(mid) * ks).sum()) < mean:
            lo = mid
        else:
            hi = mid
    return pmf(0.5 * (lo + hi))


_PMF: dict[str, np.ndarray] = {scene: _count_pmf(m) for scene, m in MEAN_PERSONS.items()}


def draw_count(rng: np.random.Generator, scene: str) -> int:
    return MIN_PERSONS + int(rng.choice(len(_PMF[scene]), p=_PMF[scene]))


# ----------------------------------------------------------------------------- backgrounds

def _rand_colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, size=3)
    return int(c[0]), int(c[1]), int(c[2])


def _vertical_gradient(h: int, w: int, top: Sequence[int], bottom: Sequence[int]) -> np.ndarray:
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(col[:, None, :], (h, w, 3)).astype(np.uint8)


def draw_background(rng: np.random.Generator, size: int, scene: str) -> np.ndarray:
    s = size
    if scene == "indoor":
        horizon = int(s * rng.uniform(0.55, 0.75))
        wall = np.array(_rand_colour(rng, 90, 230))
        img = np.empty((s, s, 3), np.uint8)
        img[:horizon] = _vertical_gradient(horizon, s, wall, wall * 0.8)
        floor = np.array(_rand_colour(rng, 40, 160))
        img[horizon:] = _vertical_gradient(s - horizon, s, floor * 0.8, floor)
        if rng.random() < 0.5:  # floor boards / tiles
            step = int(rng.integers(12, 40))
            for x in range(0, s, step):
                cv2.line(img, (x, horizon), (int(x + (x - s / 2) * 0.6), s), tuple(int(v) for v in floor * 0.6), 1)
        for _ in range(int(rng.integers(3, 9))):  # windows, shelves, pictures, tables, sofas
            kind = rng.integers(0, 4)
            w = int(s * rng.uniform(0.08, 0.35))
            h = int(s * rng.uniform(0.06, 0.3))
            x = int(rng.integers(-w // 2, s - w // 2))
            y = int(rng.integers(0, max(1, horizon + s // 8 - h)))
            col = _rand_colour(rng, 20, 240)
            cv2.rectangle(img, (x, y), (x + w, y + h), col, -1)
            if kind == 0:  # window / picture frame
                cv2.rectangle(img, (x, y), (x + w, y + h), _rand_colour(rng, 0, 120), max(2, s // 100))
                cv2.line(img, (x + w // 2, y), (x + w // 2, y + h), _rand_colour(rng, 0, 120), 2)
            elif kind == 1:  # shelf with books
                bx = x
                while bx < x + w:
                    bw = int(rng.integers(3, 10))
                    cv2.rectangle(img, (bx, y + h // 3), (bx + bw, y + h), _rand_colour(rng), -1)
                    bx += bw + 1
            elif kind == 2:  # table legs
                cv2.rectangle(img, (x + 3, y + h), (x + 8, y + h + h), col, -1)
                cv2.rectangle(img, (x + w - 8, y + h), (x + w - 3, y + h + h), col, -1)
        if rng.random() < 0.6:  # a lamp
            cx = int(rng.integers(0, s))
            cv2.circle(img, (cx, int(s * 0.08)), int(s * 0.04), (200, 240, 255), -1)
    else:
        horizon = int(s * rng.uniform(0.35, 0.6))
        sky_top = np.array((rng.uniform(150, 230), rng.uniform(100, 180), rng.uniform(30, 120)))
        img = np.empty((s, s, 3), np.uint8)
        img[:horizon] = _vertical_gradient(horizon, s, sky_top, np.minimum(sky_top + 60, 255))
        ground = np.array((rng.uniform(20, 120), rng.uniform(90, 200), rng.uniform(60, 200)))
        if rng.random() < 0.4:  # sand / pavement
            ground = np.array((rng.uniform(100, 190), rng.uniform(150, 210), rng.uniform(170, 230)))
        img[horizon:] = _vertical_gradient(s - horizon, s, ground * 0.8, ground)
        for _ in range(int(rng.integers(0, 4))):  # clouds
            c = (int(rng.integers(0, s)), int(rng.integers(0, max(1, horizon // 2))))
            cv2.ellipse(img, c, (int(s * rng.uniform(0.05, 0.15)), int(s * rng.uniform(0.02, 0.05))), 0, 0, 360,
                        (245, 245, 245), -1)
        if rng.random() < 0.4:  # buildings
            for _ in range(int(rng.integers(1, 4))):
                w = int(s * rng.uniform(0.1, 0.3))
                h = int(s * rng.uniform(0.1, 0.35))
                x = int(rng.integers(-w // 2, s))
                cv2.rectangle(img, (x, horizon - h), (x + w, horizon), _rand_colour(rng, 60, 200), -1)
        for _ in range(int(rng.integers(1, 7))):  # trees
            x = int(rng.integers(0, s))
            base = horizon + int(rng.integers(0, max(1, s // 10)))
            th = int(s * rng.uniform(0.1, 0.3))
            tw = max(3, th // 8)
            cv2.rectangle(img, (x - tw, base - th), (x + tw, base), (30, 60, 90), -1)
            green = (int(rng.integers(20, 80)), int(rng.integers(100, 200)), int(rng.integers(20, 90)))
            for _ in range(int(rng.integers(2, 6))):
                r = int(th * rng.uniform(0.25, 0.45))
                c = (x + int(rng.integers(-r, r + 1)), base - th + int(rng.integers(-r, r // 2 + 1)))
                cv2.circle(img, c, r, green, -1)
    return img


# ----------------------------------------------------------------------------- persons

@dataclass
class PersonSpec:
    """Everything random about one drawn person (pixels per unit: `h` / 100)."""

    cx: float
    foot_y: float
    h: float
    front: bool                     # facing the camera (face visible) or facing away
    lower: str                      # "pants" | "shorts" | "skirt" | "dress"
    sleeves: str                    # "long" | "short" | "none"
    hat: bool
    sunglasses: bool
    scarf: bool
    tie: bool
    belt: bool
    socks: bool
    shoes: bool
    bag: int                        # 0 none, else -1/+1: the person's own right/left side (+1 = left)
    long_hair: bool
    arm_angles: tuple[float, float, float, float]  # left upper, left fore, right upper, right fore (deg)
    leg_angles: tuple[float, float, float, float]  # left thigh, left shin, right thigh, right shin (deg)
    colours: np.ndarray = field(repr=False)         # (NUM_CLASSES, 3) uint8 BGR
    stripes: dict[int, tuple[float, float, float]] = field(default_factory=dict, repr=False)

    @property
    def left_sign(self) -> int:
        """+1 when the person's own left is towards the image's right (facing the camera)."""
        return 1 if self.front else -1


def make_person(rng: np.random.Generator, cx: float, foot_y: float, h: float, scene: str) -> PersonSpec:
    front = bool(rng.random() < 0.78)
    lower = str(rng.choice(["pants", "shorts", "skirt", "dress"], p=[0.42, 0.13, 0.25, 0.2]))
    colours = np.zeros((NUM_CLASSES, 3), np.uint8)
    skin = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]) + rng.integers(-12, 13, 3)
    for k in (C["face"], C["left-arm"], C["right-arm"], C["left-leg"], C["right-leg"]):
        colours[k] = np.clip(skin, 0, 255)
    colours[C["hair"]] = np.clip(np.array(HAIR_TONES[int(rng.integers(len(HAIR_TONES)))]) + rng.integers(-10, 11, 3), 0, 255)
    for k in CLOTHES + (C["belt"], C["left-shoe"]):
        colours[k] = _rand_colour(rng, 0, 256)
    colours[C["sunglasses"]] = _rand_colour(rng, 0, 50)
    colours[C["right-shoe"]] = colours[C["left-shoe"]]
    stripes: dict[int, tuple[float, float, float]] = {}
    for k in (C["upper-clothes"], C["dress"], C["skirt"], C["pants"], C["scarf"], C["tie"], C["socks"]):
        if rng.random() < 0.35:  # (angle, period in units, darkening)
            stripes[k] = (float(rng.uniform(0, math.pi)), float(rng.uniform(2.0, 6.0)), float(rng.uniform(0.45, 0.8)))
    tie_ok = scene == "indoor" and front and lower != "dress"
    return PersonSpec(
        cx=cx, foot_y=foot_y, h=h, front=front, lower=lower,
        sleeves=str(rng.choice(["long", "short", "none"], p=[0.4, 0.4, 0.2])),
        hat=bool(rng.random() < 0.25), sunglasses=bool(front and rng.random() < 0.22),
        scarf=bool(rng.random() < 0.15), tie=bool(tie_ok and rng.random() < 0.4),
        belt=bool(lower in ("pants", "shorts", "skirt") and rng.random() < 0.35),
        socks=bool(rng.random() < 0.35), shoes=bool(rng.random() < 0.92),
        bag=int(rng.choice([0, -1, 1], p=[0.72, 0.14, 0.14])), long_hair=bool(rng.random() < 0.35),
        arm_angles=(float(rng.uniform(-5, 70)), float(rng.uniform(-40, 90)),
                    float(rng.uniform(-5, 70)), float(rng.uniform(-40, 90))),
        leg_angles=(float(rng.uniform(-4, 22)), float(rng.uniform(-15, 15)),
                    float(rng.uniform(-4, 22)), float(rng.uniform(-15, 15))),
        colours=colours, stripes=stripes)


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x)), int(round(y))


def _limb(x0: float, y0: float, ang1: float, len1: float, ang2: float, len2: float,
          outward: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Joint and end points of a two-segment limb hanging down, angles in degrees swinging
    towards image side `outward` (+1 right, -1 left)."""
    a1 = math.radians(ang1)
    x1, y1 = x0 + outward * len1 * math.sin(a1), y0 + len1 * math.cos(a1)
    a2 = a1 + math.radians(ang2)
    x2, y2 = x1 + outward * len2 * math.sin(a2), y1 + len2 * math.cos(a2)
    return (x1, y1), (x2, y2)


def draw_person_labels(p: PersonSpec, ox: int, oy: int, shape: tuple[int, int]) -> np.ndarray:
    """The part-label map of one person in a window of `shape` whose top-left is (ox, oy)."""
    lab = np.zeros(shape, np.uint8)
    u = p.h / 100.0
    L = p.left_sign
    fx, fy = p.cx - ox, p.foot_y - oy

    def y(v: float) -> float:  # height above the feet, in units
        return fy - v * u

    def x(v: float) -> float:
        return fx + v * u

    def thick(v: float) -> int:
        return max(1, int(round(v * u)))

    hip_y, knee_len, shin_len = y(50), 24 * u, 22 * u
    sh_y, waist_y = y(80), y(55)
    legs: dict[int, list[tuple[float, float]]] = {}
    # ---- legs (skin), then lower clothes
    for side, cls, (a1, a2) in ((+1, C["left-leg"], p.leg_angles[:2]), (-1, C["right-leg"], p.leg_angles[2:])):
        hx = x(side * L * 4.5)
        knee, ankle = _limb(hx, hip_y, a1, knee_len, a2, shin_len, side * L)
        legs[cls] = [(hx, hip_y), knee, ankle]
        pts = np.array([_pt(*q) for q in legs[cls]], np.int32)
        cv2.polylines(lab, [pts], False, cls, thick(7), cv2.LINE_8)
        cv2.circle(lab, _pt(*ankle), thick(3), cls, -1)
    if p.lower in ("pants", "shorts"):
        hip_poly = np.array([_pt(x(-9.5), waist_y), _pt(x(9.5), waist_y), _pt(x(9.5), hip_y + 4 * u),
                             _pt(x(-9.5), hip_y + 4 * u)], np.int32)
        cv2.fillPoly(lab, [hip_poly], C["pants"])
        for cls in (C["left-leg"], C["right-leg"]):
            (hx, hy), knee, ankle = legs[cls]
            end = ankle if p.lower == "pants" else (hx + 0.55 * (knee[0] - hx), hy + 0.55 * (knee[1] - hy))
            pts = [(hx, hy), knee, ankle] if p.lower == "pants" else [(hx, hy), end]
            cv2.polylines(lab, [np.array([_pt(*q) for q in pts], np.int32)], False, C["pants"], thick(8.5))
    elif p.lower in ("skirt", "dress"):
        hem = (legs[C["left-leg"]][1][1] + legs[C["right-leg"]][1][1]) / 2 + 2 * u
        spread = 1.0 + 0.5 * (abs(legs[C["left-leg"]][1][0] - legs[C["right-leg"]][1][0]) / (20 * u))
        poly = np.array([_pt(x(-9), waist_y), _pt(x(9), waist_y), _pt(x(14 * spread), hem),
                         _pt(x(-14 * spread), hem)], np.int32)
        cv2.fillPoly(lab, [poly], C["skirt"] if p.lower == "skirt" else C["dress"])
    # ---- socks and shoes
    for cls, shoe in ((C["left-leg"], C["left-shoe"]), (C["right-leg"], C["right-shoe"])):
        (_, _), knee, ankle = legs[cls]
        if p.socks:
            a = (ankle[0] + 0.3 * (knee[0] - ankle[0]), ankle[1] + 0.3 * (knee[1] - ankle[1]))
            cv2.line(lab, _pt(*a), _pt(*ankle), C["socks"], thick(7.5))
        if p.shoes:
            cv2.ellipse(lab, _pt(ankle[0], ankle[1] + 2 * u), (thick(5), thick(3)), 0, 0, 360, shoe, -1)
    # ---- long hair falls behind the back (drawn before the torso)
    head_c = (x(0), y(92))
    if p.long_hair:
        hair = np.array([_pt(x(-8), y(95)), _pt(x(8), y(95)), _pt(x(10), y(74)), _pt(x(-10), y(74))], np.int32)
        cv2.fillPoly(lab, [hair], C["hair"])
    # ---- torso
    torso_cls = C["dress"] if p.lower == "dress" else C["upper-clothes"]
    bottom = y(47) if p.lower != "dress" else y(60)
    torso = np.array([_pt(x(-12), sh_y), _pt(x(12), sh_y), _pt(x(10), bottom), _pt(x(-10), bottom)], np.int32)
    cv2.fillPoly(lab, [torso], torso_cls)
    if p.belt:
        cv2.rectangle(lab, _pt(x(-10), waist_y - 1.5 * u), _pt(x(10), waist_y + 1.5 * u), C["belt"], -1)
    if p.tie:
        tie = np.array([_pt(x(-1.2), y(82)), _pt(x(1.2), y(82)), _pt(x(2.2), y(62)), _pt(x(0), y(58)),
                        _pt(x(-2.2), y(62))], np.int32)
        cv2.fillPoly(lab, [tie], C["tie"])
    # neck (skin belongs to no class of the table: part of the face region, as MHP annotates it)
    if p.front:
        cv2.rectangle(lab, _pt(x(-2.5), y(86)), _pt(x(2.5), sh_y + u), C["face"], -1)
    else:
        cv2.rectangle(lab, _pt(x(-2.5), y(86)), _pt(x(2.5), sh_y + u), C["hair"], -1)
    if p.scarf:
        cv2.ellipse(lab, _pt(x(0), sh_y), (thick(8), thick(3.5)), 0, 0, 360, C["scarf"], -1)
        cv2.line(lab, _pt(x(3), sh_y), _pt(x(4), y(64)), C["scarf"], thick(3.5))
    # ---- arms (skin) with sleeves
    for side, cls, (a1, a2) in ((+1, C["left-arm"], p.arm_angles[:2]), (-1, C["right-arm"], p.arm_angles[2:])):
        shx = x(side * L * 12)
        elbow, hand = _limb(shx, sh_y + 2 * u, a1, 16 * u, a2, 15 * u, side * L)
        pts = np.array([_pt(shx, sh_y + 2 * u), _pt(*elbow), _pt(*hand)], np.int32)
        cv2.polylines(lab, [pts], False, cls, thick(5.5))
        cv2.circle(lab, _pt(*hand), thick(3.2), cls, -1)
        if p.sleeves != "none" and torso_cls == C["upper-clothes"]:
            if p.sleeves == "long":
                sl = [(shx, sh_y + 2 * u), elbow, (elbow[0] + 0.8 * (hand[0] - elbow[0]), elbow[1] + 0.8 * (hand[1] - elbow[1]))]
            else:
                sl = [(shx, sh_y + 2 * u), (shx + 0.5 * (elbow[0] - shx), sh_y + 2 * u + 0.5 * (elbow[1] - sh_y - 2 * u))]
            cv2.polylines(lab, [np.array([_pt(*q) for q in sl], np.int32)], False, C["upper-clothes"], thick(6.5))
        if p.bag == side:  # strap from the opposite shoulder, bag at this hip
            bx = x(side * L * 13)
            cv2.line(lab, _pt(x(-side * L * 9), sh_y + u), _pt(bx, y(52)), C["bag"], thick(1.5))
            cv2.rectangle(lab, _pt(bx - 5 * u, y(55)), _pt(bx + 5 * u, y(42)), C["bag"], -1)
    # ---- head
    axes = (thick(6.8), thick(8.2))
    if p.front:
        cv2.ellipse(lab, _pt(*head_c), (thick(7.4), thick(8.6)), 0, 180, 360, C["hair"], -1)
        cv2.ellipse(lab, _pt(head_c[0], head_c[1] + u), axes, 0, 0, 360, C["face"], -1)
        cv2.ellipse(lab, _pt(head_c[0], head_c[1] - 4.5 * u), (thick(7.2), thick(4)), 0, 180, 360, C["hair"], -1)
        if p.sunglasses:
            for side in (-1, 1):
                cv2.ellipse(lab, _pt(x(side * 3), y(92)), (thick(2.6), thick(1.7)), 0, 0, 360, C["sunglasses"], -1)
            cv2.line(lab, _pt(x(-3), y(92.5)), _pt(x(3), y(92.5)), C["sunglasses"], thick(0.8))
    else:
        cv2.ellipse(lab, _pt(head_c[0], head_c[1] + u), (thick(7.4), thick(9)), 0, 0, 360, C["hair"], -1)
    if p.hat:
        cv2.ellipse(lab, _pt(x(0), y(97)), (thick(7.8), thick(6)), 0, 180, 360, C["hat"], -1)
        cv2.rectangle(lab, _pt(x(-10), y(97.5)), _pt(x(10), y(96)), C["hat"], -1)
    return lab


def _window(p: PersonSpec, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the person's drawing window, clipped to the canvas."""
    half = 0.45 * p.h
    x0 = max(0, int(p.cx - half))
    x1 = min(size, int(p.cx + half) + 1)
    y0 = max(0, int(p.foot_y - 1.06 * p.h))
    y1 = min(size, int(p.foot_y + 0.08 * p.h) + 1)
    return x0, y0, x1, y1


def _paint(image: np.ndarray, owner: np.ndarray, labels: list[np.ndarray], p: PersonSpec, idx: int,
           size: int, noise: np.ndarray) -> None:
    x0, y0, x1, y1 = _window(p, size)
    if x1 <= x0 or y1 <= y0:
        labels.append(np.zeros((0, 0), np.uint8))
        return
    lab = draw_person_labels(p, x0, y0, (y1 - y0, x1 - x0))
    labels.append(lab)
    mask = lab != 0
    col = p.colours[lab].astype(np.int16)
    if p.stripes:
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u = p.h / 100.0
        for cls, (ang, period, dark) in p.stripes.items():
            m = lab == cls
            if not m.any():
                continue
            phase = (xx[m] * math.cos(ang) + yy[m] * math.sin(ang)) / (period * u)
            band = (np.floor(phase).astype(np.int64) & 1).astype(bool)
            vals = col[m]
            vals[band] = (vals[band] * dark).astype(np.int16)
            col[m] = vals
    col += noise[y0:y1, x0:x1]
    win = image[y0:y1, x0:x1]
    win[mask] = np.clip(col[mask], 0, 255).astype(np.uint8)
    owner[y0:y1, x0:x1][mask] = idx


def _layout_persons(rng: np.random.Generator, n: int, size: int, scene: str) -> list[PersonSpec]:
    """n persons, sorted back to front (increasing foot_y)."""
    crowd = 1.0 / (1.0 + 0.07 * (n - 2))
    depth = np.sort(rng.uniform(0, 1, n))
    slots = rng.permutation(n)
    persons = []
    for k in range(n):
        d = float(depth[k])
        h = size * crowd * rng.uniform(0.55, 0.8) * (0.7 + 0.5 * d)
        foot_y = size * (0.62 + 0.42 * d) + rng.uniform(-0.03, 0.03) * size
        cx = (slots[k] + 0.5) / n * size + rng.uniform(-0.4, 0.4) * size / n
        persons.append(make_person(rng, float(cx), float(foot_y), float(h), scene))
    return persons


def generate_image(rng: np.random.Generator, size: int, scene: str,
                   ) -> tuple[np.ndarray, list[np.ndarray], list[PersonSpec]]:
    """One image, its per-person visible label maps (left to right) and the persons' specs.

    `scene` is "indoor" or "outdoor". Persons with too little visible area are removed and the
    image is repainted, so every annotated person is clearly visible and every drawn person is
    annotated.
    """
    assert scene in ("indoor", "outdoor")
    n = draw_count(rng, scene)
    background = draw_background(rng, size, scene)
    noise = rng.integers(-10, 11, size=(size, size, 1), dtype=np.int16)
    persons = _layout_persons(rng, n, size, scene)
    min_pixels = max(30, int(0.0015 * size * size))
    def render(persons: list[PersonSpec]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[bool]]:
        image = background.copy()
        owner = np.full((size, size), -1, np.int16)
        labels: list[np.ndarray] = []
        for i, p in enumerate(persons):
            _paint(image, owner, labels, p, i, size, noise)
        keep = []
        for i, p in enumerate(persons):
            x0, y0, x1, y1 = _window(p, size)
            drawn = int((labels[i] != 0).sum()) if labels[i].size else 0
            visible = int((owner[y0:y1, x0:x1] == i).sum()) if labels[i].size else 0
            keep.append(visible >= min_pixels and visible >= 0.3 * drawn)
        return image, owner, labels, keep

    for _attempt in range(12):
        image, owner, labels, keep = render(persons)
        if all(keep) and len(persons) >= MIN_PERSONS:
            break
        persons = [p for p, k in zip(persons, keep) if k]
        while len(persons) < MIN_PERSONS:  # add a fresh person
            persons.append(_layout_persons(rng, 1, size, scene)[0])
            persons.sort(key=lambda q: q.foot_y)
    else:  # give up filtering: keep every person with at least one visible pixel
        image, owner, labels, keep = render(persons)
    full: list[np.ndarray] = []
    shown: list[PersonSpec] = []
    for i, p in enumerate(persons):
        lab = np.zeros((size, size), np.uint8)
        x0, y0, x1, y1 = _window(p, size)
        if labels[i].size:
            win = labels[i].copy()
            win[owner[y0:y1, x0:x1] != i] = 0
            lab[y0:y1, x0:x1] = win
        if lab.any():
            full.append(lab)
            shown.append(p)
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    # MM order: left to right by the box centre of the visible pixels
    centres = []
    for lab in full:
        b = mask_box(lab != 0)
        centres.append(float(b[0] + b[2]) / 2)
    order = sorted(range(len(full)), key=lambda i: (centres[i], i))
    return image, [full[i] for i in order], [shown[i] for i in order]


# ----------------------------------------------------------------------------- data set

def parse_ratios(text: str) -> tuple[float, float, float]:
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"split ratios must be a:b:c, got {text!r}")
    try:
        vals = tuple(float(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"split ratios must be numbers, got {text!r}") from None
    if not all(math.isfinite(v) and v >= 0 for v in vals) or sum(vals) <= 0:
        raise argparse.ArgumentTypeError(f"split ratios must be finite numbers >= 0 with a positive sum, "
                                         f"got {text!r}")
    return vals  # type: ignore[return-value]


def split_ids(ids: Sequence[str], ratios: Sequence[float], seed: int) -> dict[str, list[str]]:
    """Shuffle `ids` with `seed` and cut them by `ratios` (train, val, test), largest remainders."""
    n = len(ids)
    total = float(sum(ratios))
    exact = [n * r / total for r in ratios]
    counts = [int(math.floor(e)) for e in exact]
    for i in sorted(range(3), key=lambda i: -(exact[i] - counts[i]))[: n - sum(counts)]:
        counts[i] += 1
    perm = np.random.default_rng([seed, 7919]).permutation(n)
    shuffled = [ids[i] for i in perm]
    out, start = {}, 0
    for name, c in zip(("train", "val", "test"), counts):
        out[name] = sorted(shuffled[start:start + c])
        start += c
    return out


def image_scene(seed: int, index: int, scene: str) -> str:
    if scene != "mixed":
        return scene
    return "indoor" if np.random.default_rng([seed, index, 1]).random() < 0.5 else "outdoor"


def generate_dataset(out: str | Path, num: int, size: int = 512, seed: int = 0, scene: str = "mixed",
                     ratios: Sequence[float] = (3, 1, 1)) -> dict[str, list[str]]:
    """Write `num` images in the layout under `out`; returns the split lists. The caller makes sure
    that `out` is new or empty (`gpsnet make-data` does, with `prepare_output_folder`)."""
    out = Path(out)
    ids = []
    for i in range(num):
        sc = image_scene(seed, i, scene)
        image_id = f"{sc}_{i:05d}"
        rng = np.random.default_rng([seed, i])
        image, labels, _ = generate_image(rng, size, sc)
        write_sample(out, image_id, image, labels)
        ids.append(image_id)
    splits = split_ids(ids, ratios, seed)
    for name, lst in splits.items():
        write_split(out, name, lst)
    return splits


def contact_sheet(root: str | Path, ids: Sequence[str], thumb: int = 160) -> np.ndarray:
    """Rows of [image | coloured whole-image label with person (green) and face (red) boxes]."""
    from gpsnet.data.layout import load_sample

    rows = []
    for image_id in ids:
        s = load_sample(root, image_id)
        f = thumb / max(s.image.shape[:2])
        img = cv2.resize(s.image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        col = cv2.resize(colorize(s.global_label), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
        for b, fb, hf in zip(s.person_boxes, s.face_boxes, s.has_face):
            cv2.rectangle(col, _pt(b[0] * f, b[1] * f), _pt(b[2] * f - 1, b[3] * f - 1), (0, 255, 0), 1)
            if hf:
                cv2.rectangle(col, _pt(fb[0] * f, fb[1] * f), _pt(fb[2] * f - 1, fb[3] * f - 1), (0, 0, 255), 1)
        cell = np.full((thumb, 2 * thumb + 4, 3), 255, np.uint8)
        cell[: img.shape[0], : img.shape[1]] = img
        cell[: col.shape[0], thumb + 4: thumb + 4 + col.shape[1]] = col
        rows.append(cell)
    cols = 2 if len(rows) > 3 else 1
    while len(rows) % cols:
        rows.append(np.full_like(rows[0], 255))
    grid = [np.concatenate(rows[r * cols:(r + 1) * cols], axis=1) for r in range(len(rows) // cols)]
    return np.concatenate(grid, axis=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="gpsnet make-data", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/synthetic", help="output root (default out/synthetic)")
    ap.add_argument("--num", type=int, default=100, help="number of images (default 100)")
    ap.add_argument("--size", type=int, default=512, help="square image size in pixels (default 512)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scene", choices=SCENES, default="mixed",
                    help="indoor (mean 5.23 persons, ties), outdoor (mean 3.54, no ties) or mixed (half each)")
    ap.add_argument("--split", type=parse_ratios, default=(3.0, 1.0, 1.0), help="train:val:test ratios (3:1:1)")
    ap.add_argument("--preview", metavar="PNG", help="also write a contact sheet of the first images")
    ap.add_argument("--preview-count", type=int, default=6)
    ap.add_argument(OVERWRITE_FLAG, action="store_true", help="replace --out wholly when it holds a data set")
    args = ap.parse_args(argv)
    if args.num < 1:
        ap.error("--num must be >= 1")
    if args.size < 64:
        ap.error("--size must be >= 64")
    t0 = time.perf_counter()
    try:
        prepare_output_folder(args.out, LAYOUT_DIRS, "GPS-layout data set", args.overwrite, GPSDataError)
        splits = generate_dataset(args.out, args.num, args.size, args.seed, args.scene, args.split)
    except GPSDataError as err:
        print(f"make-data: {err}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    print(f"make-data: {args.num} images ({args.scene}, {args.size} px, seed {args.seed}) in {args.out}: "
          + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f"; {args.num / dt:.1f} images/s")
    if args.preview:
        ids = sorted(sum(splits.values(), []), key=lambda i: int(i.rsplit("_", 1)[1]))[: args.preview_count]
        sheet = contact_sheet(args.out, ids)
        Path(args.preview).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(args.preview), sheet):
            print(f"make-data: cannot write {args.preview}", file=sys.stderr)
            return 1
        print(f"make-data: preview {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
