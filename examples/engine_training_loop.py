"""A hand-written minibatch training loop on fastmlp's Engine: SGD with momentum and an
exponentially decayed learning rate, every buffer allocated before the first epoch.

It also shows the raw sums: the loss and gradient of a batch split across two "workers"
(what a data-parallel driver does) equal the whole batch's.

    python examples/engine_training_loop.py
"""
import numpy as np

from fastmlp.backend import Engine


def make_data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=n)
    return X, y.reshape(-1, 1)


def main(epochs=30, batch_size=64, verbose=True):
    X, Y = make_data()
    engine = Engine([8, 64, 64, 1], activation="tanh", out_activation="identity",
                    loss="squared_error", max_rows=batch_size)
    rng = np.random.default_rng(1)
    params = rng.normal(size=engine.n_params) * 0.1
    grads = np.empty_like(params)
    velocity = np.zeros_like(params)
    xb = np.empty((batch_size, X.shape[1]))  # the batch, gathered in place
    yb = np.empty((batch_size, 1))
    order = np.arange(X.shape[0])
    lr, momentum = 0.05, 0.9
    curve = []
    for epoch in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for start in range(0, X.shape[0] - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            np.take(X, idx, axis=0, out=xb)
            np.take(Y, idx, axis=0, out=yb)
            loss, _ = engine.loss_and_grads(params, xb, yb, alpha=1e-4, out=grads)
            velocity *= momentum
            velocity -= lr * grads
            params += velocity
            total += loss
        curve.append(total / (X.shape[0] // batch_size))
        lr *= 0.95
    if verbose:
        print(f"mean batch loss: epoch 1 {curve[0]:.4f}, epoch {epochs} {curve[-1]:.4f}")

    # raw sums: two shards of one batch give the whole batch's loss and gradient
    whole = Engine([8, 64, 64, 1], activation="tanh")
    expect_grads = np.empty_like(params)
    expect, _ = whole.loss_and_grads(params, X[:500], Y[:500], alpha=1e-4, out=expect_grads)
    total_grads, shard = np.zeros_like(params), np.empty_like(params)
    loss_sum = weight_sum = 0.0
    for rows in (slice(0, 300), slice(300, 500)):  # one per worker
        ls, ws = whole.raw_sums(params, X[rows], Y[rows], out=shard)
        total_grads += shard
        loss_sum += ls
        weight_sum += ws
    combined = whole.finish(params, total_grads, loss_sum, weight_sum, alpha=1e-4)
    if verbose:
        print(f"whole batch loss {expect:.12f}, two shards combined {combined:.12f}")
    return {"curve": curve, "loss": expect, "combined_loss": combined,
            "grads": expect_grads, "combined_grads": total_grads}


if __name__ == "__main__":
    main()
