"""Safety checks that must work with no model, store or network: the crisis protocol."""

from bot.safety.crisis import CrisisSignal, care_note, detect, protocol_message
from bot.safety.resources import Resource, Resources, load_resources

__all__ = ["CrisisSignal", "Resource", "Resources", "care_note", "detect", "load_resources", "protocol_message"]
