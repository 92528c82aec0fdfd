"""Stage two: students trained from the cache, without the teacher.

- :mod:`.stream` and :mod:`.dataset`: the WebDataset pipeline over the cache, and its PyTorch dataset;
- :mod:`.losses` and :mod:`.objective`: LIT's IR, KD and combined losses over one batch;
- :mod:`.students`: students that fit a cache, and the section checkpoints;
- :mod:`.trainer`: ``train-sections`` and ``kd`` (and their baselines), on :mod:`.loop` and :mod:`.optim`;
- :mod:`.supervised`: the teacher's own training and the evaluation of any checkpoint;
- :mod:`.distributed`, :mod:`.monitor`, :mod:`.metrics`: DDP, TensorBoard, PSNR and SSIM.

Nothing here imports stage one (:mod:`litcache.extract`); a test checks it in a fresh interpreter.
"""

from __future__ import annotations

from litcache._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CacheDataset": "litcache.train.dataset",
        "CacheStream": "litcache.train.stream",
        "LitObjective": "litcache.train.objective",
        "build_student": "litcache.train.students",
        "evaluate_checkpoint": "litcache.train.supervised",
        "make_cache_loader": "litcache.train.dataset",
        "train_end_to_end": "litcache.train.trainer",
        "train_sections": "litcache.train.trainer",
        "train_teacher": "litcache.train.supervised",
    },
)
