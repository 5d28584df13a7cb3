"""The monitor service of the CTR AIOps platform."""
