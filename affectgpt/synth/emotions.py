"""The synthetic corpus's emotions: base emotions, their open-vocabulary label words, and the cue settings
that the face renderer and the voice synthesiser express them with.

Cue values are centres; each sample jitters them (``CUE_JITTER``) so that classes overlap a little, as real
expressions do, and a model has to integrate face, voice and text rather than read one pixel.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cues:
    # face
    mouth_curve: float  # -1 frown .. +1 smile
    mouth_open: float  # 0 closed .. 1 wide open
    brow_angle: float  # -1 inner ends raised (sad/afraid) .. +1 inner ends lowered (angry)
    brow_raise: float  # 0 rest .. 1 high
    eye_open: float  # 0.2 narrowed .. 1 wide
    head_speed: float  # head motion frequency, Hz
    head_amp: float  # head motion amplitude, fraction of face size
    # voice
    pitch: float  # mean f0, Hz (before the speaker's own offset)
    contour: float  # f0 slope over a syllable, octaves (+ rising, - falling)
    energy: float  # 0..1 loudness
    rate: float  # syllables per second
    tremor: float  # f0 jitter depth, fraction


BASES: dict[str, Cues] = {
    "happy": Cues(0.9, 0.35, 0.0, 0.3, 0.75, 1.2, 0.04, 230, 0.25, 0.75, 4.5, 0.0),
    "sad": Cues(-0.7, 0.05, -0.7, 0.2, 0.4, 0.3, 0.015, 140, -0.3, 0.3, 2.3, 0.02),
    "angry": Cues(-0.4, 0.25, 0.9, 0.0, 0.5, 2.2, 0.05, 190, 0.0, 1.0, 5.0, 0.01),
    "worried": Cues(-0.2, 0.15, -0.6, 0.7, 0.95, 3.5, 0.02, 250, 0.1, 0.45, 5.5, 0.06),
    "surprised": Cues(0.1, 0.9, -0.1, 1.0, 1.0, 0.8, 0.06, 270, 0.6, 0.8, 3.8, 0.01),
    "disgusted": Cues(-0.5, 0.2, 0.4, 0.1, 0.35, 0.6, 0.03, 155, -0.2, 0.55, 3.0, 0.0),
    "neutral": Cues(0.0, 0.05, 0.0, 0.2, 0.65, 0.2, 0.01, 175, 0.0, 0.5, 3.5, 0.0),
}

# Open-vocabulary label words per base emotion (what annotators write), ordered from most to least common.
VOCABULARY: dict[str, tuple[str, ...]] = {
    "happy": ("happy", "joyful", "excited", "cheerful", "pleased", "relieved"),
    "sad": ("sad", "disappointed", "helpless", "lonely", "hurt", "depressed"),
    "angry": ("angry", "frustrated", "irritated", "annoyed", "furious", "dissatisfied"),
    "worried": ("worried", "anxious", "nervous", "scared", "afraid", "tense"),
    "surprised": ("surprised", "shocked", "astonished", "amazed"),
    "disgusted": ("disgusted", "contemptuous", "disdainful", "repulsed"),
    "neutral": ("calm", "neutral", "serious", "relaxed"),
}

# Relative frequency of base emotions (MER corpora are dominated by neutral, happy, sad, angry, worried).
BASE_WEIGHTS: dict[str, float] = {
    "happy": 0.2, "sad": 0.17, "angry": 0.17, "worried": 0.15, "surprised": 0.1, "disgusted": 0.06, "neutral": 0.15,
}

CUE_JITTER = 0.18  # relative standard deviation applied to every cue of every sample
