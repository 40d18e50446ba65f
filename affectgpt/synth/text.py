"""Subtitles and descriptions for the synthetic corpus.

Fine descriptions follow the EMER-Fine pattern ("In the video ... In the audio ... In the text ... Therefore
...") and describe the cues the sample was actually rendered with. Coarse descriptions imitate automatic
pre-labelling: short, often missing a modality, and their labels are wrong at the configured noise rate.
"""

from __future__ import annotations

import numpy as np

from affectgpt.synth.emotions import Cues

SUBTITLES: dict[str, tuple[str, ...]] = {
    "happy": (
        "We finally did it, {name}! I knew the {thing} would work out.",
        "This is the best {time} I have had in years.",
        "You remembered the {thing}? That is so sweet of you.",
        "Ha, look at this, {name}, everything went exactly as planned!",
        "I passed! I really passed the {event}!",
        "Let's celebrate tonight, the {thing} is ours.",
    ),
    "sad": (
        "I waited for you all {time}, {name}, and you never came.",
        "It doesn't matter anymore. The {thing} is gone.",
        "I tried so hard on the {event}, and it still wasn't enough.",
        "Everyone left. I am the only one still here.",
        "I miss how things used to be, {name}.",
        "Maybe I was never meant to keep the {thing}.",
    ),
    "angry": (
        "How many times do I have to tell you, {name}? Stop touching my {thing}!",
        "You lied to me about the {event}!",
        "Get out. I don't want to hear another word.",
        "Who gave you the right to decide that without me?",
        "This is the third {time} in a row you've ruined it!",
        "Don't you dare walk away from me, {name}.",
    ),
    "worried": (
        "What if the {event} goes wrong, {name}? What do we do then?",
        "He should have called by now. Something must have happened.",
        "I don't know... I'm not sure we can fix the {thing} in time.",
        "Please tell me the results aren't bad.",
        "{name}, did you hear that noise outside?",
        "We only have one {time} left and nothing is ready.",
    ),
    "surprised": (
        "Wait, what? You're getting married, {name}?",
        "No way! The {thing} was here the whole time?",
        "You did all of this for the {event}? I had no idea!",
        "Really? Since when do you know how to do that?",
        "{name}! What are you doing here?",
        "I can't believe it, the {event} is today?",
    ),
    "disgusted": (
        "Ugh, what is that smell? Get the {thing} away from me.",
        "You actually eat that? That's revolting, {name}.",
        "I can't stand people who cheat at the {event}.",
        "Don't touch me with those dirty hands.",
        "How could anyone wear something like that to the {event}?",
        "That's the most pathetic excuse I've ever heard.",
    ),
    "neutral": (
        "The meeting is at three, {name}. Bring the {thing}.",
        "I'll take the train tomorrow {time}.",
        "Put the {thing} on the table, please.",
        "We need to check the numbers for the {event} again.",
        "The shop closes at nine on weekdays.",
        "{name} said the report is on your desk.",
    ),
}
FILLERS = {
    "name": ("Li Wei", "Xiao Ming", "Anna", "Mr. Zhang", "Mom", "Tom", "Doctor Chen", "Lisa"),
    "thing": ("plan", "contract", "house", "project", "car", "ring", "letter", "money"),
    "time": ("morning", "week", "night", "summer", "day"),
    "event": ("exam", "interview", "wedding", "meeting", "trip", "competition"),
}


def subtitle(base: str, rng: np.random.Generator) -> str:
    template = str(rng.choice(SUBTITLES[base]))
    return template.format(**{key: str(rng.choice(values)) for key, values in FILLERS.items()})


def video_clues(c: Cues) -> list[str]:
    clues = []
    if c.mouth_curve > 0.45:
        clues.append("the corners of the mouth turn up into a clear smile")
    elif c.mouth_curve < -0.45:
        clues.append("the corners of the mouth are pulled down")
    elif c.mouth_curve < -0.2:
        clues.append("the mouth is tense and slightly downturned")
    if c.mouth_open > 0.6:
        clues.append("the mouth opens wide")
    if c.brow_angle > 0.6:
        clues.append("the eyebrows are drawn together and lowered into a frown")
    elif c.brow_angle < -0.4:
        clues.append("the inner ends of the eyebrows are raised")
    if c.brow_raise > 0.6:
        clues.append("the eyebrows are lifted high")
    if c.eye_open > 0.9:
        clues.append("the eyes are wide open")
    elif c.eye_open < 0.45:
        clues.append("the eyes are narrowed")
    if c.head_speed > 3.0:
        clues.append("the head trembles slightly")
    elif c.head_speed > 1.8:
        clues.append("the head shakes sharply")
    elif c.head_amp < 0.02 and c.head_speed < 0.4:
        clues.append("the head stays still")
    return clues or ["the facial expression shows little change"]


def audio_clues(c: Cues) -> list[str]:
    clues = []
    if c.pitch > 235:
        clues.append("the voice is high-pitched")
    elif c.pitch < 160:
        clues.append("the voice is low and deep")
    if c.contour > 0.4:
        clues.append("the intonation rises sharply")
    elif c.contour > 0.15:
        clues.append("the intonation rises lightly")
    elif c.contour < -0.15:
        clues.append("the intonation falls at the end of each word")
    if c.energy > 0.85:
        clues.append("the speech is loud and forceful")
    elif c.energy < 0.4:
        clues.append("the speech is soft and weak")
    if c.rate > 4.8:
        clues.append("the speaking rate is fast")
    elif c.rate < 2.8:
        clues.append("the speaking rate is slow")
    if c.tremor > 0.04:
        clues.append("the voice trembles")
    return clues or ["the tone of voice is even"]


def join_labels(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def fine_description(c: Cues, text: str, labels: list[str], rng: np.random.Generator) -> str:
    video, audio = video_clues(c), audio_clues(c)
    return (
        f"In the video, {join_labels(video)}. "
        f"In the audio, {join_labels(audio)}. "
        f'In the text, the subtitle says: "{text}" '
        f"{str(rng.choice(_LINKS))} "
        f"Therefore, the emotional state of the person is {join_labels(labels)}."
    )


def coarse_description(c: Cues, labels: list[str], rng: np.random.Generator) -> str:
    parts = []
    if rng.random() < 0.7:
        parts.append(f"The person's face: {str(rng.choice(video_clues(c)))}.")
    if rng.random() < 0.6:
        parts.append(f"In the audio, {str(rng.choice(audio_clues(c)))}.")
    parts.append(f"The emotion is {join_labels(labels)}.")
    return " ".join(parts)


_LINKS = (
    "The facial expression and the tone of voice fit the content of the sentence.",
    "Taken together, the visual, acoustic and textual clues point the same way.",
    "The words alone are ambiguous, but the face and the voice make the feeling clear.",
    "All three clues agree with one another.",
)
