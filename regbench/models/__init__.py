"""The model zoo: one module per architecture, each built by ``conf/model/<name>.yaml``.

Every constructor takes ``(in_shape, num_classes, *, activation, norm, dropout, input_dropout,
noise_std, drop_path, init, init_gain, ...)``, validates them with :mod:`regbench.models.common`
and builds its regularization from :mod:`regbench.models.layers`; all of it is off by default.
"""
