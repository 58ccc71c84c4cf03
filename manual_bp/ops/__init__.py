"""The ops, one family a file, each in the shape of PyTorch's "Extending torch.autograd" example: the autograd
Function(s) with forward and backward adjacent and the derivative in the lecture's notation, the checked functional
wrapper(s) with torch.nn.functional's signature, and the nn.Module(s) with torch.nn's.

    linear.py                 Z = X·Wᵀ + b
    activations.py            sigmoid, tanh, relu, leaky_relu, gelu
    softmax.py                softmax, log_softmax
    dropout.py                inverted dropout
    mse_loss.py               mean squared error
    binary_cross_entropy.py   BCE on probabilities, BCE with logits
    nll_loss.py               negative log-likelihood, and the class-index rules cross-entropy shares
    cross_entropy.py          softmax cross-entropy, class indices or class probabilities
    layer_norm.py             layer norm, and the normalisation arithmetic batch norm shares
    batch_norm.py             batch norm, training and eval

manual_bp.functional and manual_bp.nn re-export the wrappers and modules under torch's names.
"""
