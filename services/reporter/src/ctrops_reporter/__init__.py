"""The reporter service of the CTR AIOps platform."""
