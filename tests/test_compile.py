"""torch.compile(fullgraph=True) of a network of manual layers: forward and backward match eager."""
import torch

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
