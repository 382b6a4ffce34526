"""FlexSwitch (journal §III-C): learned sparsity (LGS), learned bit-widths (BAS), their losses,
the optimisation loop and the storage of the result in a ``.tsw`` pack.

Modules, bottom up (each imports only the ones above it):

- :mod:`.lgs`: learnable gated sparsification, Eq. 6-8;
- :mod:`.bas`: bit-width allocation search, Eq. 12, 14, 15;
- :mod:`.losses`: the performance-preservation losses, Eq. 9-11;
- :mod:`.train`: the optimisation loop (Eq. 8 / Eq. 14) over one task;
- :mod:`.storage`: the learned switches as ``.tsw`` entries (SASS, Eq. 16-17);
- :mod:`.run`: the ``python -m tswitch flex`` driver over a built suite.

The asymmetric quantiser of Eq. 13 and the decoded form of a quantised switch are pure math and
live in :mod:`tswitch.core.quant`, which :mod:`tswitch.pack` and :mod:`tswitch.merging` use too.
"""
