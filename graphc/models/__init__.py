"""The seed models of Knet's benchmark table as graphc symbols."""

from graphc.models.zoo import CHARLM_STATE_NAMES, charlm, lenet, linreg, mlp, softmax_regression

__all__ = ["CHARLM_STATE_NAMES", "charlm", "lenet", "linreg", "mlp", "softmax_regression"]
