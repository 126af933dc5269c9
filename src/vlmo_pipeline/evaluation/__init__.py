"""vlmo_pipeline.evaluation"""
