"""Readers of the paper's corpora in the layouts they are distributed in, and of manifests.

Each reader is a :class:`emorl.data.corpus.Corpus`: Hydra's ``dataset`` group instantiates
one (``dataset=meld dataset.root=/data/MELD.Raw``).
"""

from emorl.data.corpora.emobox import EmoBoxFolds
from emorl.data.corpora.iemocap import IEMOCAP
from emorl.data.corpora.manifest import ManifestCorpus
from emorl.data.corpora.meld import MELD
from emorl.data.corpora.ravdess import RAVDESS
from emorl.data.corpora.savee import SAVEE

__all__ = ["IEMOCAP", "MELD", "RAVDESS", "SAVEE", "EmoBoxFolds", "ManifestCorpus"]
