"""The trainer service of the CTR AIOps platform."""
