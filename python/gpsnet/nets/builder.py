"""A thin re-export for users' scripts written against the net builder before ``gpsnet.nets`` was split
by idea: nothing in the package, its tests or scripts imports it (tests/test_interfaces.py checks that).
New code imports each name from its one home (docs/interfaces.md):

- ``gpsnet.nets.config``: ``NetConfig``, ``--set`` (``add_set_arg``, ``override``), the settings (``Setting``)
- ``gpsnet.nets.variants``: the variant registry (``VariantSpec``, ``Stage``, ``register``, ``spec_of``)
- ``gpsnet.nets.solver``: the schedules and the solver text
- ``gpsnet.nets.prototxt``: a variant's prototxt text (built, committed or ``--net``) and file names
- ``gpsnet.nets.parts`` / ``gpsnet.nets.graphs``: the layer pieces and the variants' graphs (need pycaffe:
  read here on first use)
- ``gpsnet.nets.build_nets``: the ``gpsnet build-nets`` command (``python -m gpsnet.nets.builder`` runs it too)
"""
from __future__ import annotations

import importlib
from typing import Any

from gpsnet.nets.config import (DEFAULT_DATA_ROOT, SETTINGS, TRAIN_FACES, NetConfig, Setting, add_set_arg,  # noqa: F401
                                chosen_setting, committed_setting, named_setting, override, setting)
from gpsnet.nets.prototxt import (NET_NAME_PREFIX, REPO_ROOT, net_param_text, net_text,  # noqa: F401
                                  read_net_prototxt, snapshot_name, solver_file, train_net_file)
from gpsnet.nets.solver import (CPU_MAX_ITER, CPU_SCHEDULE, PAPER_MAX_ITER, PAPER_SCHEDULE,  # noqa: F401
                                PAPER_STEP, POLY_POWER, SOLVER_HEADER, Schedule, learning_rate, solver_text)
from gpsnet.nets.variants import (GLOBAL_NET_PREFIX, LOCAL_KINDS, LOCAL_PREFIX, PARSER_PREFIX,  # noqa: F401
                                  REGISTRY, VARIANTS, Stage, VariantSpec, register, spec_of, table_order,
                                  unregister, variants)
from gpsnet.nets.build_nets import expected_files, main, written_by_builder  # noqa: F401

_CAFFE_NAMES = {"build": "graphs", "GRAPHS": "graphs", "graph": "graphs", "BOX_HEAD_FCS": "parts"}


def __getattr__(name: str) -> Any:
    """The names that need pycaffe (``build``, ``GRAPHS``, ``graph``, ``BOX_HEAD_FCS``), imported on use."""
    if name in _CAFFE_NAMES:
        return getattr(importlib.import_module(f"gpsnet.nets.{_CAFFE_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
