"""An MLP-Mixer image classifier as an optbench task, on the images optbench already loads
(``tasks.data.images``: synthetic shapes and scikit-learn digits offline, CIFAR-10/100 through
torchvision). A new model on existing data: this file is the whole task.

MLP-Mixer (Tolstikhin, Houlsby, Kolesnikov, Beyer, Zhai, Unterthiner, Yung, Steiner, Keysers,
Uszkoreit, Lucic, Dosovitskiy, "MLP-Mixer: An all-MLP Architecture for Vision", NeurIPS 2021, arXiv
2105.01601): non-overlapping patches projected to ``width`` channels, then ``depth`` blocks of
``x + MLP_tokens(LN(x)^T)^T`` and ``x + MLP_channels(LN(x))``, a final LayerNorm, mean over tokens
and a linear head. Roles: the patch projection is the stem (``conv_first``), the head ``head``, the
LayerNorm gains and all biases ``vector``, every MLP weight ``matrix`` (what Muon-like optimizers take).
"""

from __future__ import annotations

import torch
from torch import nn

from harness.task import Metric, Option, Task, TaskRequest, TaskSpec, TinyRun, roles_by_module
from tasks.data import images

SIZES = {  # per size: patch side, width, depth, batch, steps, eval cadence
    "tiny": dict(patch=4, width=32, depth=2, batch_size=64, steps=30, eval_every=10),
    "small": dict(patch=2, width=64, depth=4, batch_size=128, steps=600, eval_every=100),
    "paper": dict(patch=4, width=256, depth=8, batch_size=256, steps=40_000, eval_every=2_000),
}


class MixerBlock(nn.Module):
    def __init__(self, tokens: int, width: int, expansion: int = 4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.token_mlp = nn.Sequential(
            nn.Linear(tokens, tokens * expansion), nn.GELU(), nn.Linear(tokens * expansion, tokens)
        )
        self.channel_mlp = nn.Sequential(
            nn.Linear(width, width * expansion), nn.GELU(), nn.Linear(width * expansion, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, tokens, width)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, channels: int, image: int, patch: int, width: int, depth: int, classes: int):
        super().__init__()
        tokens = (image // patch) ** 2
        self.stem = nn.Conv2d(channels, width, kernel_size=patch, stride=patch)
        self.blocks = nn.Sequential(*(MixerBlock(tokens, width) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(dim=1))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Truncated-normal-like init from ``generator`` only (std 0.02 weights, zero biases, unit norms)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.normal_(0.0, 0.02, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)


def _resolve(request: TaskRequest) -> TaskRequest:
    size, opts = SIZES[request.size], request.options
    filled = {k: opts[k] if opts[k] is not None else size[k] for k in ("patch", "width", "depth", "batch_size")}
    source = images.SOURCES[request.dataset]
    if source.size % filled["patch"]:
        from harness.errors import UserError

        raise UserError(
            f"patch={filled['patch']} does not divide the {source.size}x{source.size} images of "
            f"{request.dataset}; pick a divisor of {source.size}"
        )
    return request.with_options(**filled)


def _build(request: TaskRequest, data: images.Images) -> Task:
    size, opts = SIZES[request.size], dict(request.options)
    source = images.SOURCES[request.dataset]

    def make_model(generator: torch.Generator) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # constructors draw from the global RNG: keep it untouched
            model = Mixer(source.channels, source.size, opts["patch"], opts["width"], opts["depth"], source.n_classes)
        model.reset_parameters(generator)
        return model

    return Task(
        name="mixer_images",
        dataset=request.dataset,
        size=request.size,
        metric=Metric("accuracy", "max"),
        steps=size["steps"],
        eval_every=size["eval_every"],
        make_model=make_model,
        make_data=lambda device: images.ImageData(data, device, opts["batch_size"], augment=opts["augment"]),
        loss=images.classification_loss,
        evaluate=images.classification_evaluator(opts["imbalance"] > 1.0),
        roles=lambda model: roles_by_module(model, head=model.head, conv_first=model.stem),
        penalty=1.0 / source.n_classes,
        options=opts,
        batch_size=opts["batch_size"],
        description="MLP-Mixer on images",
    )


TASK = TaskSpec(
    name="mixer_images",
    description="MLP-Mixer (Tolstikhin et al. 2021) on optbench's image data: synthetic / digits offline, CIFAR online",
    datasets=images.DATASETS,
    default_dataset={"tiny": "synthetic", "small": "digits", "paper": "cifar10"},
    options=(
        Option("patch", int, None, "patch side in pixels", auto="size", minimum=1),
        Option("width", int, None, "channels per token", auto="size", minimum=1),
        Option("depth", int, None, "mixer blocks", auto="size", minimum=1),
        Option("batch_size", int, None, "images per step", auto="size", minimum=1),
        Option("augment", bool, True, "random crop + flip"),
        Option("imbalance", float, 1.0, "long-tail ratio k of the training set (CIFAR)", minimum=1),
        Option("data_seed", int, 0, "which images form the splits", minimum=0),
    ),
    metrics=(Metric("accuracy", "max"),),
    resolve=_resolve,
    locate=lambda request, root: images.locate(
        request.dataset, root, request.options["data_seed"], request.options["imbalance"]
    ),
    load=images.load,
    build=_build,
    tiny=TinyRun(steps=20, window=4, min_drop=0.1),
)
