"""metatts: few-shot voice adaptation for text-to-speech with a meta-learned initialization."""

__version__ = "0.2.0"
