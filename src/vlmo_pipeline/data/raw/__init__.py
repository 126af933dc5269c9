"""vlmo_pipeline.data.raw"""
