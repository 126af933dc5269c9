"""vlmo_pipeline.pipelines"""
