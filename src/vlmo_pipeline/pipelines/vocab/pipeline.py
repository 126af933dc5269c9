"""Wiring of the `vocab` pipeline."""

from kedro.pipeline import Pipeline, node

from vlmo_pipeline.pipelines.vocab.nodes import build_vocabulary


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                build_vocabulary,
                inputs=["text_arrow", "coco_arrow", "vqav2_arrow", "nlvr2_arrow", "params:vocab"],
                outputs="vocab",
                name="build_vocab",
                tags=["vocab"],
            )
        ]
    )
