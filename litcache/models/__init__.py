"""Models as LIT sees them: any module plus the ordered module paths of its sections.

- :mod:`.specs`: a model spec (a built-in name, or a factory with its kwargs and section paths), torch-free;
- :mod:`.registry`: a spec built into a :class:`SectionedModel`, and which factories a checkpoint may name;
- :mod:`.sections`: :class:`SectionedModel`, the module with hooks on its section boundaries;
- :mod:`.probing`: one small forward that learns the boundary shapes and checks every section runs alone;
- :mod:`.checkpoint`: checkpoints that record how to rebuild their model and load without unpickling code;
- :mod:`.resnet`, :mod:`.resnext`, :mod:`.generator`, :mod:`.zoo`: the built-in families.

The names below are imported when first used, so ``litcache.models.specs`` stays free of torch.
"""

from __future__ import annotations

from litcache._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BUILTIN_EXAMPLES": "litcache.models.specs",
        "builtin": "litcache.models.specs",
        "describe": "litcache.models.specs",
        "resolve_spec": "litcache.models.specs",
        "OUTPUT_KINDS": "litcache.models.probing",
        "Probe": "litcache.models.probing",
        "check_compatible": "litcache.models.probing",
        "probe": "litcache.models.probing",
        "probe_boundaries": "litcache.models.probing",
        "build_model": "litcache.models.registry",
        "Normalize": "litcache.models.sections",
        "SectionedModel": "litcache.models.sections",
        "expand_section": "litcache.models.sections",
    },
)
