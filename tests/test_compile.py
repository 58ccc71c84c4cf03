"""torch.compile(fullgraph=True) of a network of manual layers: forward and backward match eager."""
import copy

import pytest
import torch

import manual_bp.functional as MF
import manual_bp.nn as mnn


def test_compiled_mlp_forward_and_backward_match_eager():
    torch.manual_seed(0)
    net = torch.nn.Sequential(mnn.Linear(20, 16), mnn.ReLU(), mnn.Linear(16, 8), mnn.Tanh(), mnn.Linear(8, 4),
                              mnn.Sigmoid(), mnn.Linear(4, 3))
    loss_fn = mnn.CrossEntropyLoss()
    x, y = torch.randn(10, 20), torch.randint(3, (10,))

    def step(x, y):
        return loss_fn(net(x), y)

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True)
    compiled_loss = compiled(x, y)
    compiled_loss.backward()
    compiled_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    eager_loss = step(x, y)
    eager_loss.backward()
    torch.testing.assert_close(compiled_loss, eager_loss)
    for compiled_grad, p in zip(compiled_grads, net.parameters()):
        torch.testing.assert_close(compiled_grad, p.grad)


def test_compiled_loss_arguments_match_eager():
    """One compiled graph through every new argument path: class weights, ignore_index, label smoothing, K-dim and
    probability targets, BCE weight and pos_weight, MSE weight, relu and dropout in place, dropout p = 1."""
    torch.manual_seed(0)
    logits, scores = torch.randn(4, 3, 2, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    labels = torch.tensor([[0, 1], [-100, 2], [1, 1], [2, -100]])
    class_weight, probs = torch.rand(3) + 0.5, torch.rand(5, 3)
    weight, pos_weight = torch.rand(5, 3), torch.rand(3) * 3

    def losses(logits, scores):
        hidden = MF.relu(scores * 1, inplace=True)
        return (MF.cross_entropy(logits, labels, class_weight, label_smoothing=0.1)
                + MF.cross_entropy(scores, probs, class_weight, label_smoothing=0.2)
                + MF.binary_cross_entropy(torch.sigmoid(scores), probs, class_weight)
                + MF.binary_cross_entropy_with_logits(hidden, probs, weight, pos_weight=pos_weight)
                + MF.mse_loss(MF.dropout(scores * 1, 1.0, inplace=True), probs, weight=weight))

    torch._dynamo.reset()
    compiled_loss = torch.compile(losses, fullgraph=True)(logits, scores)
    compiled_grads = torch.autograd.grad(compiled_loss, (logits, scores))
    eager_loss = losses(logits, scores)
    torch.testing.assert_close(compiled_loss, eager_loss)
    torch.testing.assert_close(compiled_grads, torch.autograd.grad(eager_loss, (logits, scores)))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_compiled_network_of_the_new_layers_matches_eager_running_statistics_included(momentum):
    """Three training steps: losses, gradients and every state-dict entry (running statistics, num_batches_tracked)
    equal eager. momentum=None compiles because BatchNorm1d passes 1/num_batches_tracked as a tensor (torch's own
    BatchNorm1d(momentum=None) breaks the graph there: it reads float(num_batches_tracked))."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(mnn.Linear(6, 5), mnn.BatchNorm1d(5, momentum=momentum), mnn.GELU(),
                              mnn.Linear(5, 4), mnn.LayerNorm(4), mnn.LeakyReLU(0.1), mnn.LogSoftmax(dim=1))
    twin = copy.deepcopy(net)
    loss_fn = mnn.NLLLoss(weight=torch.rand(4), ignore_index=0)

    def step(net, x, y):
        return loss_fn(net(x), y)

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True)
    for _ in range(3):
        x, y = torch.randn(8, 6), torch.randint(4, (8,))
        compiled_loss, eager_loss = compiled(net, x, y), step(twin, x, y)
        compiled_loss.backward()
        eager_loss.backward()
        torch.testing.assert_close(compiled_loss, eager_loss)
    for (name, compiled_value), eager_value in zip(net.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(compiled_value, eager_value, msg=lambda m: f"{name}: {m}")
    for compiled_param, eager_param in zip(net.parameters(), twin.parameters()):
        torch.testing.assert_close(compiled_param.grad, eager_param.grad)
    assert int(net[1].num_batches_tracked) == 3
    net.eval()
    twin.eval()
    torch._dynamo.reset()
    x = torch.randn(4, 6)
    torch.testing.assert_close(torch.compile(net, fullgraph=True)(x), twin(x))
