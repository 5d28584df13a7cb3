"""The scorer service of the CTR AIOps platform: a run's model used on new rows (online and batch)."""
