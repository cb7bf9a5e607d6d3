"""IEMOCAP (Busso et al., 2008): five dyadic sessions, the common 4-class setup.

Layout of the release::

    Session{1..5}/dialog/EmoEvaluation/<dialog>.txt        label lines
    Session{1..5}/dialog/transcriptions/<dialog>.txt       transcripts (optional)
    Session{1..5}/sentences/wav/<dialog>/<utterance>.wav

A label line reads ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5, 2.5, 2.5]``.
Classes: neutral, happy (``hap`` and ``exc`` merged), angry, sad; the other categories
(frustration, surprise, fear, disgust, other, no agreement) are excluded and counted.
The speaker of ``Ses01F_impro01_M003`` is ``Ses01M`` (session and the gender of the utterance).

Splits by session: ``test_session`` (default 5, the fixed split; sweep it over 1..5 for
leave-one-session-out) is the test set; validation is ``val_session`` when set, otherwise a
seeded ``val_fraction`` of the training dialogues.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from emorl.data.corpus import Corpus, CorpusError, Item
from emorl.emotions import label_set

SESSIONS = (1, 2, 3, 4, 5)
#: IEMOCAP category codes -> 4-class label.
CLASS_OF_CODE = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
#: Codes outside the 4-class setup (excluded, counted).
EXCLUDED_CODES = {
    "fru": "frustration", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other", "xxx": "no agreement",
}
LABEL_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\t(?P<utt>\S+)\t(?P<code>\S+)\t")
TRANSCRIPT_LINE = re.compile(r"^(?P<utt>Ses\S+)\s+\[[^\]]*\]:\s*(?P<text>.*)$")


def speaker_of(utterance: str) -> str:
    """``Ses01F_impro01_M003`` -> ``Ses01M``.

    >>> speaker_of("Ses03M_script01_2_F011")
    'Ses03F'
    """
    return utterance[:5] + utterance.rsplit("_", 1)[-1][0]


class IEMOCAP(Corpus):
    """IEMOCAP, 4 classes, split by session.

    Args:
        root: the folder holding ``Session1`` .. ``Session5``.
        test_session: the held-out session (1-5).
        val_session: a session for validation, or None for ``val_fraction`` of training dialogues.
        val_fraction: share of training dialogues used for validation when ``val_session`` is None.
        seed: seed of that draw.
        fold: 1-5, EmoBox's leave-one-session-out fold: session ``fold`` is the test split
            (replaces ``test_session``).
        on_bad_item: ``error`` or ``skip``.
    """

    name = "iemocap"
    labels = label_set("iemocap4")

    def __init__(
        self,
        root: str | Path,
        test_session: int = 5,
        val_session: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        fold: int | None = None,
        on_bad_item: str = "error",
    ) -> None:
        super().__init__(root, on_bad_item)
        if fold is not None:
            if fold not in SESSIONS:
                raise ValueError(f"dataset.fold={fold}: IEMOCAP has folds {list(SESSIONS)} (one per session)")
            test_session = fold
        self.fold = fold
        if test_session not in SESSIONS:
            raise ValueError(f"dataset.test_session={test_session}: choose a session in {list(SESSIONS)}")
        if val_session is not None and (val_session not in SESSIONS or val_session == test_session):
            raise ValueError(
                f"dataset.val_session={val_session}: choose null or a session in {list(SESSIONS)} other than "
                f"test_session={test_session}"
            )
        if not 0.0 < val_fraction < 1.0 and val_session is None:
            raise ValueError(f"dataset.val_fraction={val_fraction}: must be in (0, 1) when val_session is null")
        self.test_session = test_session
        self.val_session = val_session
        self.val_fraction = val_fraction
        self.seed = seed

    def split_of(self, session: int, dialog: str) -> str:
        if session == self.test_session:
            return "test"
        if self.val_session is not None:
            return "val" if session == self.val_session else "train"
        return "val" if random.Random(f"{self.seed}:{dialog}").random() < self.val_fraction else "train"

    def load(self) -> list[Item]:
        self.check_root("the IEMOCAP release folder holding Session1 .. Session5")
        items = []
        for session in SESSIONS:
            session_dir = self.root / f"Session{session}"
            evaluations = session_dir / "dialog" / "EmoEvaluation"
            if not evaluations.is_dir():
                raise CorpusError(f"{evaluations}: not found; dataset.root must hold Session1 .. Session5 of IEMOCAP")
            files = sorted(evaluations.glob("*.txt"))
            if not files:
                raise CorpusError(f"{evaluations}: no label files (*.txt); is the session complete?")
            for label_file in files:
                items.extend(self._read_dialog(session, session_dir, label_file))
        return items

    def _read_dialog(self, session: int, session_dir: Path, label_file: Path) -> list[Item]:
        dialog = label_file.stem
        split = self.split_of(session, dialog)
        transcripts = self._transcripts(session_dir / "dialog" / "transcriptions" / f"{dialog}.txt")
        items = []
        for lineno, line in enumerate(label_file.read_text(errors="replace").splitlines(), 1):
            match = LABEL_LINE.match(line)
            if not match:
                continue  # headers, blank lines and the annotators' per-evaluator lines
            utterance, code = match["utt"], match["code"]
            where = f"{label_file}:{lineno}"
            if code in EXCLUDED_CODES:
                self.report.exclude(EXCLUDED_CODES[code], split)
                continue
            if code not in CLASS_OF_CODE:
                known = sorted([*CLASS_OF_CODE, *EXCLUDED_CODES])
                self.report.bad(where, f"category code {code!r} is not an IEMOCAP code {known}", split)
                continue
            path = session_dir / "sentences" / "wav" / dialog / f"{utterance}.wav"
            if not path.exists():
                self.report.bad(f"{where} ({path})", "audio file not found", split)
                continue
            items.append(
                Item(
                    path=str(path),
                    label=CLASS_OF_CODE[code],
                    speaker=speaker_of(utterance),
                    split=split,
                    transcript=transcripts.get(utterance, ""),
                    meta={"session": session, "dialog": dialog, "code": code},
                )
            )
        return items

    @staticmethod
    def _transcripts(path: Path) -> dict[str, str]:
        if not path.exists():
            return {}
        out = {}
        for line in path.read_text(errors="replace").splitlines():
            match = TRANSCRIPT_LINE.match(line.strip())
            if match:
                out[match["utt"]] = match["text"].strip()
        return out
