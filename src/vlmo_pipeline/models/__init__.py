"""vlmo_pipeline.models"""
