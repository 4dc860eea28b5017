"""Channels-last: the model's conv weights and training batches change layout, not values."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from conftest import build_state
from torch import nn

from trainbench.engine import run_recipe
from trainbench.methods import METHODS
from trainbench.methods.channels_last import ChannelsLast, to_channels_last
from trainbench.models import build_model
from trainbench.recipe import load_recipe
from trainbench.results import RunDir

QUICKSTART = Path(__file__).parents[2] / "recipes" / "quickstart.yaml"
CL = torch.channels_last


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return build_model({"name": "small_cnn", "width": 8}, 3, 10)


def test_all_conv_weights_become_channels_last() -> None:
    model = small_cnn()
    convs = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and all(not w.is_contiguous(memory_format=CL) for w in convs)
    assert to_channels_last(model) is model  # in place
    four_d = [t for t in [*model.parameters(), *model.buffers()] if t.dim() == 4]
    assert len(four_d) == 3
    for w in four_d:
        assert w.is_contiguous(memory_format=CL)
        assert not w.is_contiguous()  # really NHWC, not a trivially-both layout
    # 1-d and 2-d tensors (BN, linear) are untouched
    assert all(t.is_contiguous() for t in [*model.parameters(), *model.buffers()] if t.dim() < 4)


def test_method_converts_model_and_training_batches() -> None:
    assert METHODS.get("channels_last") is ChannelsLast
    assert ChannelsLast.order == -20
    state = build_state(model=small_cnn())
    method = ChannelsLast()
    method.on_init(state)
    assert all(m.weight.is_contiguous(memory_format=CL)
               for m in state.model.modules() if isinstance(m, nn.Conv2d))

    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    x2, y2 = method.on_batch(state, x, y)
    assert x2.is_contiguous(memory_format=CL) and not x2.is_contiguous()
    assert torch.equal(x2, x)  # same values, new layout
    assert y2 is y


def test_numerics_match_nchw() -> None:
    ref = small_cnn()
    cl = to_channels_last(copy.deepcopy(ref))
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(2))

    # training mode (batch statistics): outputs and gradients
    out_ref, out_cl = ref(x), cl(x.contiguous(memory_format=CL))
    torch.testing.assert_close(out_cl, out_ref, rtol=0, atol=1e-5)
    nn.functional.cross_entropy(out_ref, y).backward()
    nn.functional.cross_entropy(out_cl, y).backward()
    for (name, p_ref), p_cl in zip(ref.named_parameters(), cl.parameters(), strict=True):
        torch.testing.assert_close(p_cl.grad, p_ref.grad, rtol=0, atol=1e-5, msg=name)

    # eval batches are not converted: the channels-last model takes NCHW input too
    ref.eval()
    cl.eval()
    with torch.no_grad():
        torch.testing.assert_close(cl(x), ref(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(cl(x.contiguous(memory_format=CL)), ref(x), rtol=0, atol=1e-5)


def test_end_to_end_the_model_trains_in_channels_last(tmp_path: Path, monkeypatch) -> None:
    # What every convolution of the engine's model sees in its training steps: the input's and
    # the weight's layout. Three-channel images: with one channel (digits) NCHW and NHWC are
    # the same memory, so a batch left in NCHW would go unnoticed.
    from trainbench import engine

    seen: list[tuple[bool, bool]] = []

    def record(conv: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if conv.training:
            x = args[0]
            seen.append((x.is_contiguous(memory_format=CL) and not x.is_contiguous(),
                         conv.weight.is_contiguous(memory_format=CL)))

    def build(*args, **kw) -> nn.Module:
        model = build_model(*args, **kw)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_pre_hook(record)
        return model

    monkeypatch.setattr(engine, "build_model", build)
    sets = ["data.dataset=synthetic", "data.image_size=8", "data.train_size=256", "data.test_size=64",
            "model.width=8", "duration=4ba", "schedule.warmup=0ba", "eval.every=null"]
    assert run_recipe(load_recipe(QUICKSTART, [*sets, "methods.channels_last={}"]),
                      RunDir(tmp_path / "cl")).status == "completed"
    assert seen == [(True, True)] * 3 * 4  # 3 convolutions, 4 steps
