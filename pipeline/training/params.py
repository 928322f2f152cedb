"""The training loop's parameters (``teacher``; ``student`` and ``students`` inherit them)
and the soft-label cache's (``soft_labels``)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import Field, field_validator

from pipeline.core.labels import TASKS
from pipeline.core.params import Batch, Count, TaskBatch, Epochs, Fraction, Index, NonNegative, Section, Seed, check_device

Positive = Annotated[float, Field(gt=0)]

#: torchvision's classification models whose classifier is ``fc`` or ``classifier`` and
#: that take 112-pixel faces (not ViT, Swin, MaxViT, GoogLeNet, Inception v3), kept here so
#: that checking params.yaml does not import torchvision: tests/test_params.py compares
#: them with ``torchvision.models.list_models()`` and builds one of each family.
BACKBONES = (
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "densenet121", "densenet161",
    "densenet169", "densenet201", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_l",
    "efficientnet_v2_m", "efficientnet_v2_s", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf",
    "regnet_x_3_2gf", "regnet_x_400mf", "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf",
    "regnet_y_1_6gf", "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf",
    "resnet101", "resnet152", "resnet18", "resnet34", "resnet50", "resnext101_32x8d", "resnext101_64x4d",
    "resnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
    "vgg19_bn", "wide_resnet101_2", "wide_resnet50_2",
)


def _all_tasks(weights: dict) -> dict:
    missing = [t for t in TASKS if t not in weights]
    if missing:
        raise ValueError(f"give a weight for every task: {', '.join(missing)} missing")
    if not any(weights.values()):
        raise ValueError("every task weight is 0: nothing would be learned")
    return weights


def _backbone(name: str) -> str:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}: use a torchvision classification model that ends in fc or "
                         "classifier and takes 112-pixel faces, such as resnet50, resnet18, mobilenet_v3_small "
                         "(not ViT, Swin, MaxViT, GoogLeNet or Inception v3)")
    return name



class LoopParams(Section):
    """The training loop's knobs, shared by the CNN and the temporal (GRU) models."""

    epochs: Epochs = 8
    steps_per_epoch: Optional[Annotated[int, Field(ge=1, le=10_000_000)]] = None  #: None: the smallest task's balanced size / batch
    batch_per_task: TaskBatch = 20
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-4
    betas: Annotated[list[Annotated[float, Field(ge=0, lt=1)]], Field(min_length=2, max_length=2)] = [0.5, 0.999]
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0
    lr_schedule: Literal["step", "cosine", "constant"] = "step"
    lr_step_epochs: Index = 3  #: step schedule: divide lr by 10 every this many epochs (0 = never)
    warmup_epochs: NonNegative = 0.0  #: linear warm-up from 0 over this many epochs
    task_weights: dict[Literal[TASKS], NonNegative] = {"AU": 1.0, "EXPR": 1.0, "VA": 1.0}
    va_centres: Literal["centres", "reference"] = "centres"
    ccc_weighting: Literal["authors", "paper"] = "authors"  #: 1 - CCC beside the batch-mean CE (losses.py)
    workers: Annotated[int, Field(ge=0, le=256)] = 0  #: DataLoader workers
    seed: Seed = 0
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    eval_batch: Batch = 128
    selection_videos: Optional[Count] = None  #: score each epoch on the first n validation videos (None: all)
    save_every: Count = 50  #: steps between resume files (an interrupted run loses at most this)

    _check_device = field_validator("device")(check_device)
    _check_weights = field_validator("task_weights")(_all_tasks)

    @field_validator("warmup_epochs")
    @classmethod
    def _warmup_within_training(cls, warmup, info):
        epochs = info.data.get("epochs")
        if warmup and epochs is not None and warmup >= epochs:
            raise ValueError(f"{warmup:g} warm-up epochs of {epochs}: the learning rate would never reach lr "
                             "(make it fewer than epochs)")
        return warmup


class DistillParams(Section):
    """What a student adds to the loop (Eq. 14)."""

    lam: Fraction = 0.6  #: weight of the ground truth on the labelled task (1 - lam on the teacher)
    #: softmax temperature of the EXPR and VA distillation (distillation uses 1 to 20; far
    #: above, the teacher's softened distributions flatten towards uniform)
    temperature: Annotated[float, Field(gt=0, le=20)] = 1.5
    distill_unlabelled: bool = True  #: learn the unlabelled tasks from the teacher (False: a control)


class TrainParams(LoopParams):
    """One training loop for the CNN teacher and students (``teacher``)."""

    section = "teacher"

    backbone: str = "resnet50"  #: any torchvision classification model by name
    pretrained: Optional[str] = None  #: path to a local state dict; never downloaded
    separate_task_passes: bool = True  #: three forward passes (BN sees each task alone)
    bn_momentum: Optional[Fraction] = None  #: every BatchNorm's momentum (None: the backbone's own)
    channels_last: bool = True  #: channels-last tensors: the fast convolutions on CPUs and recent GPUs
    augment: bool = True

    _check_backbone = field_validator("backbone")(_backbone)


class StudentParams(DistillParams, TrainParams):
    """A CNN student (Eq. 14): the teacher's knobs (``teacher``), updated with ``student``
    (the distillation's and whatever differs) and with its own entry under ``students``."""

    section = "student"
    inherits = TrainParams
    family = "students"

    epochs: Epochs = 3  #: the paper trains each student for 3 epochs


class SoftLabelsParams(Section):
    """The teacher's logits on fixed views of every training frame (``soft_labels``)."""

    section = "soft_labels"

    mode: Literal["views", "centre"] = "views"  #: K drawn views per frame, or the centre view for every augmentation
    views: Annotated[int, Field(ge=1, le=64)] = 8  #: views per frame in views mode (half of them mirrored)
    batch: Batch = 64  #: frames per forward pass (times the views)
    device: str = "auto"

    _check_device = field_validator("device")(check_device)


def advice(teacher: TrainParams) -> list[str]:
    """Settings that are valid but will not give what a user probably expects."""
    if teacher.backbone == "resnet50" and not teacher.pretrained:
        return ["teacher.backbone is resnet50 with no teacher.pretrained weights: trained from random weights, "
                "the paper's numbers are out of reach (it fine-tunes a face-pretrained ResNet-50). Set "
                "teacher.pretrained to a local backbone state dict."]
    return []
