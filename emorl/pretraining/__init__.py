"""Pretraining the embedded base: the task mixture, the lexicon it learns word meanings from, its model card.

``python -m emorl.pretrain`` builds the tiny Qwen2-Audio that ``model=tiny`` loads, as
Qwen2-Audio-7B-Instruct is the pretrained checkpoint of the 7B path.  See :mod:`emorl.pretrain`.
"""
