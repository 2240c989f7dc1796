"""Procore cost codes, cost types and sub jobs -> Sage X3 analytical dimension values
(plan.py pure; assets.py writes over the X3 API or as import files)."""
