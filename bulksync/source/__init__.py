"""Reading sources: CSV and JSONL files (gzipped or not) in batches of text columns,
mapping files and presets, typed values.
"""
