"""cargohold: a self-hosted container registry that speaks Amazon ECR's language."""

__version__ = "0.1.0"
