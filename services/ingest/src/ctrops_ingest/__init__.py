"""The ingest service of the CTR AIOps platform."""
