"""vlmo_pipeline.data"""
