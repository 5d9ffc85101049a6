"""study.logs.quiet_loggers: the named loggers quietened for the block, their levels put back
however the block ends."""

from __future__ import annotations

import logging

import pytest

from study.logs import quiet_loggers


def test_the_levels_are_set_for_the_block_and_put_back():
    a, b = logging.getLogger("gmmpvae.test.a"), logging.getLogger("gmmpvae.test.b")
    a.setLevel(logging.DEBUG)
    b.setLevel(logging.NOTSET)
    with pytest.raises(RuntimeError), quiet_loggers(("gmmpvae.test.a", "gmmpvae.test.b"),
                                                    logging.ERROR):
        assert (a.level, b.level) == (logging.ERROR, logging.ERROR)
        raise RuntimeError("the block fails")
    assert (a.level, b.level) == (logging.DEBUG, logging.NOTSET)
