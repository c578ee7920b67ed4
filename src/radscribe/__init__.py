"""radscribe: grounded, structured radiology report generation with vision-language models."""

__version__ = "0.1.0"
