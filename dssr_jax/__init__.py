"""dssr-jax: DSSR blind super-resolution in JAX/Flax (docs/design.md)."""

import os as _os

# tensorflow (tf.data; clu and etils may load it too) prints C++ start-up lines as it loads:
# oneDNN's notice on CPUs where oneDNN is on by default (Intel with AVX-512, not AMD), absl's
# pre-init notice, CPU-feature advice. The package runs before any of its modules can import
# tensorflow, so the defaults are set here, once. oneDNN off also gives every x86 machine the same
# tf.data arithmetic. A user's own setting of either variable wins.
_os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
_os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')
