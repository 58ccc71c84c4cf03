"""The update rules by hand: SGD, Adam, AdamW, RMSprop and Adagrad as torch.optim.Optimizers.

Notation (the lecture's): θ the parameters, g = ∂L/∂θ their gradient, γ the learning rate (lr), λ the weight decay,
t = 1, 2, ... the step. Each `update` is the rule's equations, one line of code per equation, beside them as a
comment; none calls torch.optim's update functions. Each class takes torch.optim's constructor arguments and
defaults, and keeps torch's parameter-group and state keys (step, momentum_buffer, exp_avg, exp_avg_sq,
max_exp_avg_sq, square_avg, grad_avg, sum), so a state dict moves between the two both ways, mid-run, and torch's
LR schedulers and Lightning drive them as they drive torch's.

NOTE: each equation uses the tensor op torch's single-tensor implementation uses for it (lerp_, addcmul_,
addcdiv_ with a scalar), so float32 rounds as torch's does; written with other ops (θ − γ·m̂/(√v̂ + ε) as separate
products) the same equations drift from torch's by a few ulp a step.
"""
import torch


def _scalar_dtype():
    """The dtype of torch's `step` counters: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _require(holds, label, value, rule):
    """torch's check and message ("Invalid learning rate: -0.1"), with the rule that was broken."""
    if not holds:
        raise ValueError(f"Invalid {label}: {value} (must be {rule})")


def _require_non_negative(**values):
    """_require(value >= 0) for each, in torch's order and with torch's names for them."""
    for name, value in values.items():
        label = {"lr": "learning rate", "eps": "epsilon value"}.get(name, f"{name} value")
        _require(0.0 <= value, label, value, f"{name} >= 0")


class ManualOptimizer(torch.optim.Optimizer):
    """What every rule shares: torch's speed flags refused, the loop over the parameters that have a gradient."""

    def __init__(self, params, defaults, **flags):
        """flags: the torch.optim flags this rule's torch twin has (foreach, maximize, differentiable, fused,
        capturable), kept in the parameter groups under torch's keys; modes manual_bp has no code for are refused."""
        name = type(self).__name__
        for flag in ("fused", "differentiable", "capturable"):
            if flags.get(flag):
                raise ValueError(f"{flag}=True is a mode of torch.optim.{name}; manual_bp.optim.{name} has one "
                                 f"handwritten update (pass {flag}=False, or use torch.optim.{name})")
        if isinstance(defaults["lr"], torch.Tensor):
            raise TypeError(f"lr must be a Python number for manual_bp.optim.{name}, got a Tensor (a tensor lr is for "
                            f"torch.optim's capturable and fused kernels); pass float(lr)")
        super().__init__(params, {**defaults, **flags})

    def __setstate__(self, state):
        """After load_state_dict (torch's state or an older one): the keys torch would fill in, and this
        implementation's own modes, whatever the state said (a torch state may say fused=True)."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            for flag in ("fused", "differentiable", "capturable"):
                if flag in self.defaults:
                    group[flag] = self.defaults[flag]

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; `closure` re-evaluates the loss, as in torch."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [(param, group) for group in self.param_groups for param in group["params"] if param.grad is not None]
        for param, _ in params:  # NOTE: every parameter checked before any is updated: a refusal changes nothing
            self._check(param)
        for param, group in params:
            grad = -param.grad if group["maximize"] else param.grad  # maximize: ascend, g ← −g
            self.update(param, grad, group)
        return loss

    def _check(self, param):
        name = type(self).__name__
        if param.grad.layout != torch.strided:
            # NOTE: of torch's rules SGD and Adagrad take sparse gradients, and SparseAdam is Adam's sparse variant;
            # torch has none for the others, so they are pointed to a dense gradient only
            sparse_rule = {"SGD": "torch.optim.SGD", "Adagrad": "torch.optim.Adagrad",
                           "Adam": "torch.optim.SparseAdam"}.get(name)
            raise RuntimeError(
                f"manual_bp.optim.{name} does not support sparse gradients (a parameter of shape "
                f"{tuple(param.shape)} has one, layout {param.grad.layout}): its update is written for dense tensors; "
                + (f"use {sparse_rule}, or " if sparse_rule else "")
                + "make the layer's gradient dense (e.g. Embedding(sparse=False))")
        if param.is_complex():
            raise TypeError(f"manual_bp.optim.{name} updates real parameters, got a complex one of shape "
                            f"{tuple(param.shape)} (its g² would have to be |g|²); use torch.optim.{name}, or "
                            "torch.view_as_real")

    def update(self, param, grad, group):
        """One step of the rule for one parameter; its state is self.state[param] (torch's keys)."""
        raise NotImplementedError

    @staticmethod
    def next_step(state):
        """t ← t + 1 in the state's `step` tensor (torch's form), returned as a Python number."""
        state["step"] += 1
        return state["step"].item()


class SGD(ManualOptimizer):
    """Stochastic gradient descent, with momentum μ, dampening τ, Nesterov momentum and weight decay λ:

        g ← g + λθ;   b_1 = g,  b_t = μ·b_{t−1} + (1 − τ)·g;   g ← g + μ·b_t (nesterov) or g ← b_t;   θ ← θ − γ·g
    """

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False,
                 foreach=None, differentiable=False, fused=None):
        _require_non_negative(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"Nesterov momentum requires a momentum and zero dampening (got momentum={momentum}, "
                             f"dampening={dampening})")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                    "nesterov": nesterov}
        super().__init__(params, defaults, maximize=maximize, foreach=foreach, differentiable=differentiable,
                         fused=fused)

    def update(self, param, grad, group):
        lr, momentum = float(group["lr"]), group["momentum"]
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])  # g ← g + λθ
        if momentum != 0:
            state = self.state[param]  # NOTE: as torch, plain SGD keeps no state at all
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.detach().clone()  # b_1 = g
            else:
                buffer.mul_(momentum).add_(grad, alpha=1 - group["dampening"])  # b_t = μ·b_{t−1} + (1 − τ)·g
            grad = grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer  # g ← g + μ·b_t, or b_t
        param.add_(grad, alpha=-lr)  # θ ← θ − γ·g


class Adam(ManualOptimizer):
    """Adam: running means of g and g², corrected for their start at 0 (Kingma & Ba), with β1, β2 = betas:

        g ← g + λθ (Adam's weight decay, an L2 term) or θ ← θ·(1 − γλ) (AdamW's, decoupled from the gradient);
        m_t = β1·m_{t−1} + (1 − β1)·g;   v_t = β2·v_{t−1} + (1 − β2)·g²;
        θ ← θ − γ·m̂ / (√v̂ + ε),   m̂ = m_t / (1 − β1^t),   v̂ = v_t / (1 − β2^t)
        (amsgrad: v̂ = v_max,t / (1 − β2^t) with v_max,t = max(v_max,t−1, v_t), the largest v so far).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        _require_non_negative(lr=lr, eps=eps)
        for index, beta in enumerate(betas):
            _require(0.0 <= beta < 1.0, f"beta parameter at index {index}", beta, f"betas[{index}] in [0, 1)")
        _require_non_negative(weight_decay=weight_decay)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults, maximize=maximize, foreach=foreach, capturable=capturable,
                         differentiable=differentiable, fused=fused)

    def update(self, param, grad, group):
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)  # m_0 = 0
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)  # v_0 = 0
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        lr, (beta1, beta2), eps, weight_decay = float(group["lr"]), group["betas"], group["eps"], group["weight_decay"]
        t = self.next_step(state)
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param.mul_(1 - lr * weight_decay)  # θ ← θ·(1 − γλ)
            else:
                grad = grad.add(param, alpha=weight_decay)  # g ← g + λθ
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)  # m_t = β1·m_{t−1} + (1 − β1)·g
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v_t = β2·v_{t−1} + (1 − β2)·g²
        second_moment = exp_avg_sq
        if group["amsgrad"]:
            max_exp_avg_sq = state["max_exp_avg_sq"]
            second_moment = torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)  # v_max,t
        denominator = (second_moment.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)  # √v̂ + ε
        param.addcdiv_(exp_avg, denominator, value=-lr / (1 - beta1**t))  # θ ← θ − γ·m̂ / (√v̂ + ε)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): θ ← θ·(1 − γλ) before the Adam step, λ = 0.01."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True  # NOTE: as torch's AdamW, whatever state was loaded


class RMSprop(ManualOptimizer):
    """RMSprop (Hinton): g divided by a running root mean square of g, with smoothing α = alpha:

        g ← g + λθ;   v_t = α·v_{t−1} + (1 − α)·g²;
        centered: ḡ_t = α·ḡ_{t−1} + (1 − α)·g, v̂ = v_t − ḡ_t², else v̂ = v_t;
        momentum μ > 0: b_t = μ·b_{t−1} + g / (√v̂ + ε), θ ← θ − γ·b_t;   else θ ← θ − γ·g / (√v̂ + ε).
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        _require_non_negative(lr=lr, eps=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        defaults = {"lr": lr, "momentum": momentum, "alpha": alpha, "eps": eps, "centered": centered,
                    "weight_decay": weight_decay}
        super().__init__(params, defaults, capturable=capturable, foreach=foreach, maximize=maximize,
                         differentiable=differentiable)

    def update(self, param, grad, group):
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
            state["square_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)  # v_0 = 0
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(param, memory_format=torch.preserve_format)  # b_0 = 0
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)  # ḡ_0 = 0
        lr, alpha, momentum = float(group["lr"]), group["alpha"], group["momentum"]
        self.next_step(state)
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])  # g ← g + λθ
        square_avg = state["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)  # v_t = α·v + (1 − α)·g²
        if group["centered"]:
            grad_avg = state["grad_avg"].lerp_(grad, 1 - alpha)  # ḡ_t = α·ḡ + (1 − α)·g
            root = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()  # √(v_t − ḡ_t²)
        else:
            root = square_avg.sqrt()  # √v_t
        root = root.add_(group["eps"])  # √v̂ + ε
        if momentum > 0:
            buffer = state["momentum_buffer"].mul_(momentum).addcdiv_(grad, root)  # b_t = μ·b + g / (√v̂ + ε)
            param.add_(buffer, alpha=-lr)  # θ ← θ − γ·b_t
        else:
            param.addcdiv_(grad, root, value=-lr)  # θ ← θ − γ·g / (√v̂ + ε)


class Adagrad(ManualOptimizer):
    """Adagrad (Duchi et al.): each parameter's step divided by the root of its summed squared gradients:

        g ← g + λθ;   γ_t = γ / (1 + (t − 1)·lr_decay);   s_t = s_{t−1} + g² (s_0 = initial_accumulator_value);
        θ ← θ − γ_t·g / (√s_t + ε).
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        _require_non_negative(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                              initial_accumulator_value=initial_accumulator_value, eps=eps)
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                    "initial_accumulator_value": initial_accumulator_value}
        super().__init__(params, defaults, foreach=foreach, maximize=maximize, differentiable=differentiable,
                         fused=fused)
        for group in self.param_groups:  # NOTE: as torch's Adagrad, the state exists from the start
            for param in group["params"]:
                self.state[param]["step"] = torch.tensor(0.0, dtype=_scalar_dtype())
                self.state[param]["sum"] = torch.full_like(param, initial_accumulator_value,
                                                           memory_format=torch.preserve_format)  # s_0

    def update(self, param, grad, group):
        state = self.state[param]
        t = self.next_step(state)
        if group["weight_decay"] != 0:
            grad = grad.add(param, alpha=group["weight_decay"])  # g ← g + λθ
        lr = float(group["lr"]) / (1 + (t - 1) * group["lr_decay"])  # γ_t = γ / (1 + (t − 1)·lr_decay)
        state["sum"].addcmul_(grad, grad, value=1)  # s_t = s_{t−1} + g²
        root = state["sum"].sqrt().add_(group["eps"])  # √s_t + ε
        param.addcdiv_(grad, root, value=-lr)  # θ ← θ − γ_t·g / (√s_t + ε)
