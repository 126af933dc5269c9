"""vlmo_pipeline: VLMo (Mixture-of-Modality-Experts) as a library plus Kedro/DVC pipelines.

The model library (`vlmo_pipeline.models`) imports torch only; data, training and evaluation build on it,
and `vlmo_pipeline.pipelines` wires everything into Kedro.
"""

__version__ = "0.1.0"
