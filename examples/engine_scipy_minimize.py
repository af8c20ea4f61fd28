"""fastmlp's Engine as the objective of scipy.optimize.minimize (L-BFGS-B).

The engine evaluates loss and gradient on a flat parameter vector -- exactly what SciPy's
optimisers want -- writing the gradient into one buffer reused at every evaluation.

    python examples/engine_scipy_minimize.py
"""
import numpy as np
from scipy.optimize import check_grad, minimize
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler

from fastmlp.backend import Engine


def main(max_iter=100, verbose=True):
    digits = load_digits()
    X = StandardScaler().fit_transform(digits.data)  # float64, C-contiguous
    Y = np.eye(10)[digits.target]                     # one-hot targets
    engine = Engine([64, 32, 10], activation="relu", out_activation="softmax",
                    loss="log_loss")

    rng = np.random.default_rng(0)
    params = rng.uniform(-0.1, 0.1, engine.n_params)
    grads = np.empty(engine.n_params)  # written by every evaluation

    def loss_and_grad(p):
        return engine.loss_and_grads(p, X, Y, alpha=1e-4, out=grads)

    # the gradient is the loss's: a finite-difference check on a few hundred rows
    small = Engine([64, 32, 10], activation="relu", out_activation="softmax",
                   loss="log_loss")
    err = check_grad(lambda p: small.loss_and_grads(p, X[:200], Y[:200], alpha=1e-4)[0],
                     lambda p: small.loss_and_grads(p, X[:200], Y[:200], alpha=1e-4)[1],
                     params, seed=0)

    first = loss_and_grad(params)[0]
    result = minimize(loss_and_grad, params, jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter})
    output = engine.forward(result.x, X)
    accuracy = float((output.argmax(1) == digits.target).mean())
    if verbose:
        print(f"gradient check error {err:.2e}; loss {first:.4f} -> {result.fun:.4f} in "
              f"{result.nit} iterations; training accuracy {accuracy:.3f}")
    return {"first_loss": first, "loss": float(result.fun), "accuracy": accuracy,
            "grad_error": float(err)}


if __name__ == "__main__":
    main()
