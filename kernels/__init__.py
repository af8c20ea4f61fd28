"""fastmlp's Numba kernels (imported as ``fastmlp.kernels``).

Legend of names and shapes used in every docstring:
  N      rows in the current batch (N <= B, the workspace capacity)
  L      number of dense layers; sizes (L+1,) = (n_in, hidden..., n_out)
  W[l]   (sizes[l], sizes[l+1]) weights, b[l] (sizes[l+1],) intercepts, l = 0..L-1
  A[l]   (N, sizes[l]) activations, A[0] = X;  Z = A[l] @ W[l] + b[l];  A[l+1] = f(Z)
  delta[l] (N, sizes[l]) = dLoss/dZ for layer l's pre-activation, l = 1..L
  P      total number of parameters (all W, then all b, flattened)

Kernels write their outputs first in the argument list, then read inputs, then sizes; each
docstring says whether it overwrites or accumulates.  Validation lives in ``fastmlp.backend``:
kernels trust their inputs.  Compiler flags come from ``_config``.
"""
from .activations import (IDENTITY, LOGISTIC, TANH, RELU, SOFTMAX, EXP, LEAKY_RELU, GELU,
                          SILU, bias_activate, bias_activate_keep, dactivation_colsum,
                          dpreactivation_colsum, keeps_preactivation, dropout_key,
                          dropout_kept)
from .losses import SQUARED_ERROR, LOG_LOSS, BINARY_LOG_LOSS, POISSON, output_delta_loss
from .network import (coef_view, intercept_view, layer_view, row_block, forward_rows,
                      forward_pass, backprop_rows, forward_backward, weight_sum, batch_loss,
                      split_forward, finish_grads, n_coef,
                      scale_grads, sum_squares, gather_rows, gather_csr_rows, gather_vector,
                      csr_slice_to_dense, train_kernels, steps_kernel, forward_kernels)
from .optim import sgd_update, adam_update, apply_update, NO_UPDATE, SGD, ADAM
from . import expfn
from .expfn import (exp32, exp64, log32, log64, sigmoid32, sigmoid64, tanh32, tanh64, vexp,
                    vlog, vsigmoid, vtanh, vgelu, vdgelu, vsilu, vdsilu)
