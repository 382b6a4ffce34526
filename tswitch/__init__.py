"""tswitch: binary task switches (T-Switch, Auto-Switch, FlexSwitch) for model merging."""

__version__ = "0.1.0"
