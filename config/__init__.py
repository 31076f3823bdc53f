"""Settings for advisor: one pydantic-settings model, read by everyone, importing nobody."""

from config.settings import Settings, SettingsError, load_settings

__all__ = ["Settings", "SettingsError", "load_settings"]
