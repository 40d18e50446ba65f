"""Per-language scope and attribution words for the lexicon extractor, and language detection.

The extractor's machinery (longest-match forms, negation and pretence scopes, concealment, things that an
emotion word qualifies) is one implementation; a language contributes only its words. Each word list is a set
of phrases, each phrase a token tuple as ``lexicon.tokens`` splits it: English phrases are tuples of words
("rather than" -> ("rather", "than")), Chinese ones tuples of Han characters (没有 -> ("没", "有")).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from affectgpt.eval.lexicon import is_han, tokens

LANGS = ("en", "zh")
QUOTES = re.compile(r'"[^"]*"|\u201c[^\u201d]*\u201d|\u300c[^\u300d]*\u300d|\u300e[^\u300f]*\u300f')


class Phrases:
    """A set of phrases (token tuples), indexed by token for matching at a position of a token list."""

    def __init__(self, text: str):
        """``text``: a comma-separated list, ``Phrases("not, rather than")``."""
        self.phrases = frozenset(tuple(tokens(p)) for p in text.split(",") if p.strip())
        self._at: dict[str, list[tuple[tuple[str, ...], int]]] = {}  # token -> (phrase, its offset in it)
        for phrase in sorted(self.phrases, key=len, reverse=True):
            for offset, token in enumerate(phrase):
                self._at.setdefault(token, []).append((phrase, offset))

    def starting(self, words: list[str], i: int) -> int:
        """Length of the longest phrase that starts at token i (0: none)."""
        return max((n for n, offset in self._spans(words, i) if offset == 0), default=0)

    def ending(self, words: list[str], j: int) -> int:
        """Length of the longest phrase that ends at token j (0: none)."""
        return max((n for n, offset in self._spans(words, j) if offset == n - 1), default=0)

    def covering(self, words: list[str], i: int) -> bool:
        """Whether some phrase spans token i."""
        return any(True for _ in self._spans(words, i))

    def _spans(self, words: list[str], i: int):
        """(length, offset of token i) of each phrase found in ``words`` across token i."""
        if not 0 <= i < len(words):
            return
        for phrase, offset in self._at.get(words[i], ()):
            if i >= offset and tuple(words[i - offset : i - offset + len(phrase)]) == phrase:
                yield len(phrase), offset


@dataclass(frozen=True)
class Rules:
    """The words one language marks scope and attribution with (see ``extract``'s docstring for their use)."""

    negators: Phrases  # start a negation scope that runs to the end of the clause
    not_negating: Phrases  # phrases that contain a negator without negating: "not only", 不断 (continuously)
    clause_words: Phrases  # end a scope, as punctuation does: but, which, 但是, 而是
    pretence: Phrases  # start a pretence scope: pretend, 假装
    concealment: Phrases  # end a negation scope: hiding implies feeling ("cannot hide her joy", 无法掩饰)
    not_person_nouns: Phrases  # things and body parts an emotion word may qualify: atmosphere, 气氛
    modifiers: Phrases  # skipped between an emotion word and the noun it may qualify: very, 很, 的
    copulas: Phrases  # link a noun to a predicative emotion word: is, 显得
    copula_required: bool  # English "the mouth is tense" needs the copula; Chinese 气氛紧张 has none
    negating_suffix: str = ""  # a token ending so negates: English "isn't"
    adverb_suffix: str = ""  # a token ending so is skipped like a modifier: English "visibly"


ENGLISH = Rules(
    negators=Phrases(
        "not, no, never, without, nor, neither, none, nothing, hardly, barely, lacks, lack, lacking, absence, "
        "less, cannot, rather than, instead of, free of, no longer"
    ),
    not_negating=Phrases("not only, a little, no doubt, nothing but"),
    clause_words=Phrases(
        "but, yet, however, although, though, while, whereas, which, who, because, since, then, therefore, "
        "thus, whether, if, when"
    ),
    pretence=Phrases(
        "pretend, pretends, pretended, pretending, feign, feigns, feigned, feigning, fake, faked, faking, forced"
    ),
    concealment=Phrases(
        "hide, hides, hid, hidden, hiding, conceal, conceals, concealed, concealing, suppress, suppresses, "
        "suppressed, suppressing, mask, masks, masked, masking, contain, contains, contained, containing, "
        "restrain, restrains, restrained, restraining"
    ),
    not_person_nouns=Phrases(
        "atmosphere, situation, situations, topic, topics, issue, issues, matter, matters, problem, problems, "
        "question, questions, conversation, conversations, discussion, discussions, scene, scenes, environment, "
        "setting, background, music, news, story, stories, event, events, moment, moments, film, movie, "
        "lighting, weather, place, room, outcome, results, result, task, work, thing, things, relationship, "
        "relationships, subject, mouth, lips, jaw, jaws, muscles, muscle, shoulders, shoulder, neck, hands, "
        "hand, fists, fingers, brow, brows, eyebrows, forehead, body"
    ),
    modifiers=Phrases(
        "very, slightly, somewhat, rather, quite, a, bit, little, too, so, more, most, extremely, also, still, "
        "and, or, relatively, fairly, increasingly, particularly, clearly, obviously, visibly"
    ),
    copulas=Phrases(
        "is, are, was, were, be, been, seems, seem, appears, appear, looks, look, remains, remain, becomes"
    ),
    copula_required=True,
    negating_suffix="n't",
    adverb_suffix="ly",
)

CHINESE = Rules(
    negators=Phrases(
        "不, 没, 没有, 并不, 并非, 毫无, 毫不, 无, 未, 从未, 绝非, 而非, 缺乏, 缺少, 无法, 难以, 谈不上, 算不上"
    ),
    # 不/没/无/未 inside words that do not negate what follows (a form such as 不安 or 无奈 is matched first
    # anyway: a negator that starts a lexicon form is that form)
    not_negating=Phrases(
        "不断, 不停, 不禁, 不由, 不住, 不少, 不仅, 不但, 不只, 不光, 不过, 不同, 不久, 不得不, 不时, 不免, "
        "不错, 不一会, 不知不觉, 忍不住, 禁不住, 止不住, 差不多, 了不起, 没想到, 无论, 未来, 无时无刻, 无意间"
    ),
    clause_words=Phrases(
        "但, 但是, 却, 然而, 而是, 而, 可是, 不过, 只是, 虽然, 尽管, 因为, 由于, 所以, 因此, 于是, 然后, 如果, 即使"
    ),
    pretence=Phrases("假装, 装作, 装出, 佯装, 故作, 强装, 伪装, 强颜, 勉强"),
    concealment=Phrases("掩饰, 隐藏, 掩盖, 掩藏, 压抑, 克制, 抑制, 忍住, 强忍, 隐忍, 藏"),
    not_person_nouns=Phrases(
        "话题, 问题, 事情, 事件, 事务, 气氛, 氛围, 环境, 场景, 场面, 情境, 情况, 局面, 局势, 形势, 背景, "
        "音乐, 消息, 新闻, 故事, 电影, 光线, 天气, 地方, 房间, 结果, 任务, 工作, 关系, 主题, 对话, 讨论, "
        "谈话, 嘴, 嘴角, 嘴唇, 下巴, 肌肉, 肩膀, 脖子, 双手, 手, 拳头, 手指, 眉头, 眉毛, 额头, 身体"
    ),
    modifiers=Phrases(
        "很, 非常, 十分, 特别, 比较, 较为, 较, 相对, 相当, 有些, 有点, 有一些, 一些, 略, 略显, 略微, 稍微, "
        "稍显, 更, 更加, 越来越, 也, 又, 都, 仍然, 依然, 还, 极其, 极为, 颇为, 太, 的, 地, 和, 与, 及, 或, "
        "或者, 且, 并且, 一种, 一丝"
    ),
    copulas=Phrases("是, 显得, 变得, 看起来, 似乎, 显然"),
    copula_required=False,
)

RULES = {"en": ENGLISH, "zh": CHINESE}


def detect(text: str) -> str:
    """"zh" when Han characters outnumber Latin words outside quotes, else "en".

    Quoted text is left out first: an English description may quote a Chinese subtitle. A Chinese character
    carries about a word's worth of meaning, so the comparison is characters against words.
    """
    body = QUOTES.sub(" ", text) if QUOTES.sub("", text).strip() else text
    han = sum(1 for ch in body if is_han(ch))
    latin = len(re.findall(r"[A-Za-z]+", body))
    return "zh" if han > latin else "en"
