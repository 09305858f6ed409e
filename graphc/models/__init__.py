"""The seed models of Knet's benchmark table as graphc symbols."""

from graphc.models.zoo import charlm, lenet, linreg, mlp, softmax_regression

__all__ = ["charlm", "lenet", "linreg", "mlp", "softmax_regression"]
