"""A drawn face whose expression carries the emotion: mouth curve and opening, brow angle and height, eye
openness, and head motion. Identity (colours, face shape, eye spacing, position) varies per sample, and the
expression sets in at a random moment, so the cue is visible in some frames more than in others."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from affectgpt.synth.emotions import BASES, Cues


@dataclass(frozen=True)
class Identity:
    skin: np.ndarray  # RGB float
    background: np.ndarray  # RGB float, top colour of a vertical gradient
    background2: np.ndarray
    face_w: float  # half-axes, fraction of the image size
    face_h: float
    eye_gap: float  # fraction of face width
    centre: tuple[float, float]  # (x, y) fraction of the image size
    pitch_offset: float  # speaker's f0 multiplier (used by the voice)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        return cls(
            skin=rng.uniform([150, 100, 70], [250, 210, 180]),
            background=rng.uniform(0, 255, 3),
            background2=rng.uniform(0, 255, 3),
            face_w=rng.uniform(0.26, 0.33),
            face_h=rng.uniform(0.34, 0.41),
            eye_gap=rng.uniform(0.36, 0.46),
            centre=(rng.uniform(0.44, 0.56), rng.uniform(0.46, 0.54)),
            pitch_offset=float(rng.choice([0.75, 1.0, 1.3]) * rng.uniform(0.92, 1.08)),
        )


def expression_curve(num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Expression intensity per frame in [0, 1]: neutral until a random onset, then a quick rise."""
    t = np.linspace(0.0, 1.0, num_frames)
    onset = rng.uniform(0.0, 0.45)
    return 1.0 / (1.0 + np.exp(-(t - onset) / 0.06))


def render_face(
    cues: Cues, who: Identity, num_frames: int, size: int, fps: int, rng: np.random.Generator
) -> np.ndarray:
    """Frames uint8 [T, size, size, 3]."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rest = BASES["neutral"]
    gradient = (who.background * (1 - yy[..., None]) + who.background2 * yy[..., None]).astype(np.float32)
    intensity = expression_curve(num_frames, rng)
    phase = rng.uniform(0, 2 * np.pi)
    blink_at = rng.integers(0, num_frames)
    # A few noise fields cycled over the frames: sensor-like noise at a fraction of the cost of fresh noise.
    noise = 6 * rng.standard_normal((3, size, size, 3), dtype=np.float32)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        k = intensity[i]
        mix = _mixer(rest, cues, k)
        t = i / fps
        motion = k * cues.head_amp
        cx = who.centre[0] + motion * np.sin(2 * np.pi * cues.head_speed * t + phase)
        cy = who.centre[1] + 0.5 * motion * np.sin(2 * np.pi * cues.head_speed * t * 0.7 + phase)
        img = gradient.copy()
        face = ((xx - cx) / who.face_w) ** 2 + ((yy - cy) / who.face_h) ** 2 < 1
        img[face] = who.skin
        eye_open = 0.1 if i == blink_at else mix("eye_open")
        _draw_eyes(img, xx, yy, cx, cy, who, eye_open)
        _draw_brows(img, xx, yy, cx, cy, who, mix("brow_angle"), mix("brow_raise"))
        _draw_mouth(img, xx, yy, cx, cy, who, mix("mouth_curve"), mix("mouth_open"))
        img += noise[i % len(noise)]
        np.clip(img, 0, 255, out=img)
        frames[i] = img
    return frames


def _mixer(rest: Cues, target: Cues, k: float):
    def mix(name: str) -> float:
        return (1 - k) * getattr(rest, name) + k * getattr(target, name)

    return mix


def _draw_eyes(img, xx, yy, cx, cy, who: Identity, openness: float) -> None:
    rx = 0.11 * who.face_w
    ry = max(rx * 0.85 * openness, 0.004)
    ey = cy - 0.18 * who.face_h
    for side in (-1, 1):
        ex = cx + side * who.eye_gap * who.face_w
        white = ((xx - ex) / rx) ** 2 + ((yy - ey) / ry) ** 2 < 1
        img[white] = (245, 245, 245)
        pupil = white & (((xx - ex) ** 2 + (yy - ey) ** 2) < (0.5 * rx) ** 2)
        img[pupil] = (30, 25, 20)


def _draw_brows(img, xx, yy, cx, cy, who: Identity, angle: float, raise_: float) -> None:
    half = 0.16 * who.face_w
    base_y = cy - (0.33 + 0.12 * raise_) * who.face_h
    drop = 0.09 * who.face_h * angle  # inner end goes down for angle > 0
    thickness = 0.018
    for side in (-1, 1):
        ex = cx + side * who.eye_gap * who.face_w
        inner = (ex - side * half, base_y + drop)
        outer = (ex + side * half, base_y - drop)
        _stroke(img, xx, yy, inner, outer, thickness, (60, 40, 30))


def _draw_mouth(img, xx, yy, cx, cy, who: Identity, curve: float, opening: float) -> None:
    w = 0.42 * who.face_w
    my = cy + 0.5 * who.face_h
    dx = (xx - cx) / w
    inside = np.abs(dx) < 1
    lip = my + curve * 0.12 * who.face_h * (1 - dx**2)  # smile: centre lower than corners
    gap = (0.012 + opening * 0.16 * who.face_h) * np.sqrt(np.clip(1 - dx**2, 0, 1))
    region = inside & (yy > lip - 0.012) & (yy < lip + gap + 0.012)
    img[region] = (120, 30, 40)
    if opening > 0.2:
        img[inside & (yy > lip + 0.008) & (yy < lip + gap - 0.004)] = (50, 10, 15)


def _stroke(img, xx, yy, a, b, thickness, colour) -> None:
    ax, ay = a
    bx, by = b
    vx, vy = bx - ax, by - ay
    t = np.clip(((xx - ax) * vx + (yy - ay) * vy) / (vx * vx + vy * vy), 0, 1)
    dist2 = (xx - ax - t * vx) ** 2 + (yy - ay - t * vy) ** 2
    img[dist2 < thickness**2] = colour
