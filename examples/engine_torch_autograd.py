"""fastmlp's Engine as a PyTorch ``autograd.Function``: the MLP and its loss computed by
fastmlp, the gradients handed back to PyTorch -- for the parameters AND for the input, so
that layers before it (here a torch ``Linear`` feature map) train through it.

    python examples/engine_torch_autograd.py      (needs torch)
"""
import numpy as np
import torch

from fastmlp.backend import Engine


class FastmlpLoss(torch.autograd.Function):
    """loss = engine's loss of (params, X, Y); backward gives dLoss/dparams and dLoss/dX.

    Use a loss whose gradient is the reported loss's own (log_loss, binary_log_loss,
    poisson); for squared_error fastmlp follows scikit-learn and returns the gradient of
    n_outputs * loss."""

    @staticmethod
    def forward(ctx, params, X, Y, engine, alpha):
        p = params.detach().numpy()
        x = np.ascontiguousarray(X.detach().numpy())
        y = np.ascontiguousarray(Y.detach().numpy())
        grads = np.empty_like(p)
        x_grad = np.empty_like(x)
        loss, _ = engine.loss_and_grads(p, x, y, alpha=alpha, out=grads, X_grad=x_grad)
        ctx.save_for_backward(torch.from_numpy(grads), torch.from_numpy(x_grad))
        return torch.tensor(loss, dtype=params.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        grads, x_grad = ctx.saved_tensors
        return grad_output * grads, grad_output * x_grad, None, None, None


def main(steps=200, verbose=True):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    raw = torch.from_numpy(rng.normal(size=(512, 6)))
    labels = (raw[:, 0] * raw[:, 1] > 0).long() + (raw[:, 2] > 1).long()
    Y = torch.nn.functional.one_hot(labels, 3).double()

    engine = Engine([8, 32, 3], activation="tanh", out_activation="softmax",
                    loss="log_loss")
    features = torch.nn.Linear(6, 8).double()           # a PyTorch layer before fastmlp
    params = torch.nn.Parameter(torch.from_numpy(rng.normal(size=engine.n_params) * 0.2))

    # the hand-off is exact: PyTorch's own numerical gradient check
    small = (params.detach().clone().requires_grad_(True),
             features(raw[:5]).detach().requires_grad_(True))
    ok = torch.autograd.gradcheck(lambda p, x: FastmlpLoss.apply(p, x, Y[:5], engine, 1e-3),
                                  small, eps=1e-6, atol=1e-6)

    opt = torch.optim.Adam(list(features.parameters()) + [params], lr=0.01)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = FastmlpLoss.apply(params, features(raw), Y, engine, 1e-4)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        out = engine.forward(params.detach().numpy(), features(raw).numpy())
    accuracy = float((out.argmax(1) == labels.numpy()).mean())
    if verbose:
        print(f"gradcheck {ok}; loss {losses[0]:.4f} -> {losses[-1]:.4f}; "
              f"training accuracy {accuracy:.3f}")
    return {"gradcheck": ok, "losses": losses, "accuracy": accuracy,
            "linear_grad": features.weight.grad}


if __name__ == "__main__":
    main()
