"""tswitch: binary task switches (T-Switch, Auto-Switch, FlexSwitch) for model merging."""

__version__ = "0.2.0"  # the one place the version is written (pyproject.toml reads it)
