"""The evaluation network: drop-path, auxiliary head, ImageNet stem, parameter and FLOP counts."""

import pytest
import torch
from torch import nn

from nasp.core.measure import flop_count, parameter_count
from nasp.spaces.darts_cnn import child as darts_cnn
from nasp.spaces.darts_cnn.child import ChildNetwork
from nasp.spaces.darts_cnn.genotype import BUILTIN_GENOTYPES, Genotype
from nasp.spaces.darts_cnn.network_parts import AuxiliaryHead, drop_path

pytestmark = pytest.mark.usefixtures("one_thread")

DARTS_V2 = BUILTIN_GENOTYPES["DARTS_V2"]

ALL_SKIP = Genotype(normal=[("skip_connect", 0), ("skip_connect", 1)] * 4,
                    normal_concat=[2, 3, 4, 5],
                    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4,
                    reduce_concat=[2, 3, 4, 5])


def tiny(genotype=DARTS_V2, **kwargs) -> ChildNetwork:
    torch.manual_seed(0)
    return ChildNetwork(genotype, 3, 5, layers=3, channels=4, **kwargs)


def test_drop_path_zero_probability_is_the_identity():
    x = torch.randn(4, 3, 2, 2)
    assert drop_path(x, 0.0) is x


def test_drop_path_drops_whole_samples_with_the_given_probability():
    torch.manual_seed(0)
    p, n = 0.3, 20000
    y = drop_path(torch.ones(n, 2, 2, 2), p)
    per_sample = y.flatten(1)
    assert torch.all(per_sample == per_sample[:, :1])  # a sample is kept or dropped whole
    kept = per_sample[:, 0] != 0
    assert torch.allclose(per_sample[kept], torch.tensor(1 / (1 - p)))  # rescaled: E[y] = x
    dropped = 1 - kept.double().mean().item()
    assert abs(dropped - p) < 4 * (p * (1 - p) / n) ** 0.5


def test_cells_drop_only_non_identity_ops():
    net = tiny()
    normal, reduce = net.cells[0], net.cells[1]
    names = [op for op, _ in DARTS_V2.normal]
    assert normal.droppable == tuple(name != "skip_connect" for name in names)
    # skip_connect reading a cell input in a reduction cell is a FactorizedReduce: dropped too
    assert reduce.droppable == tuple(not (op == "skip_connect" and j >= 2)
                                     for op, j in DARTS_V2.reduce)
    assert reduce.droppable[0] and not reduce.droppable[2]


def test_drop_path_leaves_identity_only_cells_alone_in_training():
    net = tiny(ALL_SKIP).train()
    cell = net.cells[0]
    s0, s1 = torch.randn(2, 12, 8, 8), torch.randn(2, 12, 8, 8)
    torch.manual_seed(1)
    plain = cell(s0, s1, 0.0)
    assert torch.equal(cell(s0, s1, 0.9), plain)


def test_drop_path_applies_to_training_outputs_and_never_eval_outputs(monkeypatch):
    net = tiny()
    x = torch.randn(8, 3, 8, 8)
    net.eval()
    reference = net(x)
    net.drop_path_prob = 0.5
    assert torch.equal(net(x), reference)
    net.train()
    # with a drop_path that drops everything, only the identity ops of DARTS_V2's normal cell
    # pass: nodes 0 and 1 are 0, nodes 2 and 3 both skip_connect(c_{k-2}) (+ a dropped op)
    probs = []

    def drop_all(h, prob):
        probs.append(prob)
        return torch.zeros_like(h)

    cell = net.cells[0]
    s = net.stem(x)
    monkeypatch.setattr(darts_cnn, "drop_path", drop_all)
    out = cell(s, s, 0.5)
    assert probs == [0.5] * 6  # the 6 non-identity ops
    kept = cell.preprocess0(s)
    torch.testing.assert_close(out, torch.cat([torch.zeros_like(kept)] * 2 + [kept] * 2, dim=1))
    probs.clear()
    net(x)  # training mode, drop_path_prob 0.5: every cell calls it on its non-identity ops
    assert probs == [0.5] * sum(sum(c.droppable) for c in net.cells)
    probs.clear()
    net.eval()(x)
    assert probs == []


def test_auxiliary_head_only_in_training_and_fed_by_cell_two_thirds_up():
    net = tiny(auxiliary=True)
    assert net.auxiliary_after == 2 * 3 // 3
    x = torch.randn(4, 3, 8, 8)
    net.train()
    logits, aux = net(x)
    assert logits.shape == aux.shape == (4, 5)
    # the auxiliary logits do not depend on the cells after the auxiliary position
    with torch.no_grad():
        net.classifier.weight.add_(1.0)
    features = []
    net.classifier.register_forward_hook(lambda m, args, out: features.append(args[0]))
    logits2, aux2 = net(x)
    assert torch.equal(aux, aux2)
    # every classifier weight grew by 1: each logit by the sum of the classifier's input
    torch.testing.assert_close(logits2, logits + features[0].sum(1, keepdim=True))
    net.eval()
    assert isinstance(net(x), torch.Tensor)
    assert isinstance(tiny().train()(x), torch.Tensor)  # no head: plain logits in training too


def test_auxiliary_head_is_darts_on_darts_sizes_and_takes_any_size():
    head = AuxiliaryHead(16, 10).eval()
    for size in (8, 2, 1, 5, 13):
        assert head(torch.randn(2, 16, size, size)).shape == (2, 10)
    # on 8x8 maps: 5x5 average pooling with stride 3 gives 2x2, the extra pooling does nothing
    x = torch.randn(2, 16, 8, 8)
    pooled = nn.functional.avg_pool2d(x.relu(), 5, stride=3, count_include_pad=False)
    expected = head.classifier(head.features(pooled).flatten(1))
    assert torch.allclose(head(x), expected)
    assert isinstance(AuxiliaryHead(16, 10, imagenet=True).features[4], nn.Identity)


def test_any_image_size_and_channel_count():
    for channels, size in ((1, 8), (3, 17), (2, 5)):
        torch.manual_seed(0)
        net = ChildNetwork(DARTS_V2, channels, 7, layers=3, channels=4, auxiliary=True)
        out = net.train()(torch.randn(2, channels, size, size))
        assert out[0].shape == out[1].shape == (2, 7)
        assert net.eval()(torch.randn(2, channels, size, size)).shape == (2, 7)


def test_imagenet_network_reduces_by_eight_in_the_stem():
    net = ChildNetwork(DARTS_V2, 3, 10, layers=3, channels=8, auxiliary=True, imagenet=True)
    s0, s1 = net.stem(torch.randn(2, 3, 64, 64))
    assert s0.shape[-1] == 16 and s1.shape[-1] == 8
    logits, aux = net.train()(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 10)


def test_published_parameter_counts():
    # DARTS' own training log reports "param size = 3.349342MB" for DARTS_V2 (3.3M in the paper)
    assert parameter_count(ChildNetwork(DARTS_V2, 3, 10, 20, 36, auxiliary=True)) == 3_349_342
    # the NASP paper reports about 7.4M for its released cell (nasp-12 space)
    nasp = parameter_count(ChildNetwork(BUILTIN_GENOTYPES["NASP"], 3, 10, 20, 36))
    assert 7.30e6 < nasp < 7.45e6
    # DARTS' ImageNet network: 4.7M
    imagenet = ChildNetwork(DARTS_V2, 3, 1000, 14, 48, auxiliary=True, imagenet=True)
    assert 4.65e6 < parameter_count(imagenet) < 4.75e6


def test_parameter_count_excludes_the_auxiliary_head():
    with_head, without = tiny(auxiliary=True), tiny()
    assert parameter_count(with_head) == parameter_count(without)
    assert sum(p.numel() for p in with_head.parameters()) > parameter_count(with_head)


def test_flop_count_of_a_known_convolution_and_of_a_network():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False))
    assert flop_count(conv, (1, 8, 8)) == 2 * 4 * 9 * 64  # multiply-add = 2 per output tap
    # a network: every convolution and linear layer counted by hand from hooks on an eval pass
    net = tiny(auxiliary=True).eval()
    by_hand = []

    def count(module, args, out):
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            by_hand.append(2 * out.numel() * k // module.groups)
        elif isinstance(module, nn.Linear):
            by_hand.append(2 * module.in_features * module.out_features)

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    with torch.no_grad():
        net(torch.zeros(1, 3, 8, 8))
    for h in hooks:
        h.remove()
    net.train()
    assert flop_count(net, (3, 8, 8)) == sum(by_hand)  # no auxiliary head: an eval pass
    assert net.training  # restored


@pytest.mark.parametrize("imagenet", [False, True])
def test_eval_network_uses_affine_batchnorm(imagenet):
    net = ChildNetwork(DARTS_V2, 3, 10, 3, 8, imagenet=imagenet)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.affine for m in norms)
