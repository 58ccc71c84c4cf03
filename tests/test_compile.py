"""torch.compile(fullgraph=True) of a network of manual layers: forward and backward match eager."""
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
