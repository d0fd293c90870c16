"""PyTorch's generic optimizer tests (``TestOptimRenewed`` in pytorch's ``test/test_optim.py``, driven by
``OptimizerInfo`` records of ``torch.testing._internal.common_optimizers``) re-implemented over optbench's
optimizers: ``registry`` registers one ``OptimizerInfo`` per optimizer, ``checks_*`` hold one function
per upstream test, ``tests/test_torch_generic.py`` runs them. The upstream tests are read for what they
assert; the code here is optbench's own."""
