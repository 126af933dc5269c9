"""vlmo_pipeline.training"""
